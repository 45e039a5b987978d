"""Who may see and change a site, through the parking service's REST API reached directly (no
gateway): every route for every kind of caller, on SQLite and PostgreSQL.

``site-1`` is operator_1's and technician_1's, ``site-2`` operator_2's. The expected answers are
written out in the tables below, not derived from the rules under test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.cloud.test_parking_usage_power import Parking, fake_site, inventory, running_parking, until
from tests.support.identity import PRINCIPALS, headers, token

WHO = ("anonymous", "driver_a", "driver_b", "operator_1", "operator_2", "technician_1", "admin")

ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "site": ("GET", "/parking/sites/site-1", None),
    "bays": ("GET", "/parking/sites/site-1/bays", None),
    "bays?usage": ("GET", "/parking/sites/site-1/bays?usage=blocked&usage=idle", None),
    "availability": ("GET", "/parking/sites/site-1/availability", None),
    "chargers": ("GET", "/parking/sites/site-1/chargers", None),
    "power-limit": ("GET", "/parking/sites/site-1/power-limit", None),
    "put power-limit": ("PUT", "/parking/sites/site-1/power-limit", {"limit_a": 40}),
}

# route → the status for anonymous, driver_a, driver_b, operator_1, operator_2, technician_1, admin
EXPECTED: dict[str, tuple[int, ...]] = {
    "site": (401, 403, 403, 200, 404, 200, 200),
    "bays": (401, 403, 403, 200, 404, 200, 200),
    "bays?usage": (401, 403, 403, 200, 404, 200, 200),
    "availability": (401, 200, 200, 200, 200, 200, 200),
    "chargers": (401, 403, 403, 200, 404, 200, 200),
    "power-limit": (401, 403, 403, 200, 404, 200, 200),
    "put power-limit": (401, 403, 403, 202, 404, 403, 202),
}


def auth(who: str) -> dict[str, str]:
    """The caller's header; ``anonymous`` sends none (it also overrides the client's admin default)."""
    return {"Authorization": ""} if who == "anonymous" else headers(who)


async def call(api: httpx.AsyncClient, route: str, who: str, **options: Any) -> httpx.Response:
    method, path, body = ROUTES[route]
    return await api.request(method, path, json=options.pop("json", body), headers=options.pop("headers", auth(who)),
                             **options)


@pytest.fixture
async def parking(database_url: str, mosquitto: tuple[str, int], topic_root: str,
                  tmp_path: Path) -> AsyncIterator[Parking]:
    async with running_parking(database_url, mosquitto, topic_root, tmp_path) as running:
        yield running


async def two_sites(parking: Parking) -> None:
    for site_id in ("site-1", "site-2"):
        async with fake_site(parking, site_id) as site:
            await site.send(inventory())
        await until(parking.api, f"/parking/sites/{site_id}/chargers", lambda body: bool(body["chargers"]))


def test_every_route_has_an_expected_answer_for_every_caller() -> None:
    assert set(EXPECTED) == set(ROUTES)
    assert all(len(answers) == len(WHO) for answers in EXPECTED.values())


async def test_every_route_answers_each_caller_as_the_table_says(parking: Parking) -> None:
    api = parking.api
    # what each route answers for site-1 before anybody knows it: an operator of another site
    # must later get exactly this, so that nothing tells the site exists
    unknown = {route: await call(api, route, "admin") for route in ROUTES if route != "availability"}
    assert {route: response.status_code for route, response in unknown.items()} == {
        route: 404 for route in unknown}

    await two_sites(parking)
    seen = {(route, who): await call(api, route, who) for route in ROUTES for who in WHO}
    answers = {route: tuple(seen[(route, who)].status_code for who in WHO) for route in ROUTES}
    assert answers == EXPECTED

    for route, response in unknown.items():
        hidden = seen[(route, "operator_2")]
        assert hidden.json() == response.json(), route
        assert hidden.headers["content-type"] == response.headers["content-type"], route
    for route in ROUTES:
        anonymous = seen[(route, "anonymous")]
        assert anonymous.headers["www-authenticate"].startswith("Bearer"), route
        assert anonymous.headers["content-type"].startswith("application/problem+json"), route
        for who in ("driver_a", "technician_1"):
            refused = seen[(route, who)]
            if refused.status_code == 403:
                assert refused.headers["content-type"].startswith("application/problem+json"), (route, who)
                assert refused.json()["detail"], (route, who)

    # what the allowed callers see is the site's, whoever they are
    assert seen[("bays", "technician_1")].json() == seen[("bays", "admin")].json()
    assert seen[("availability", "driver_a")].json() == seen[("availability", "operator_1")].json()
    assert seen[("site", "operator_1")].json()["site_id"] == "site-1"


async def test_operators_and_technicians_see_their_own_site(parking: Parking) -> None:
    await two_sites(parking)
    api = parking.api
    for who, site_id, status in (("operator_2", "site-2", 200), ("operator_1", "site-2", 404),
                                 ("technician_1", "site-2", 404), ("technician_1", "site-1", 200)):
        response = await api.get(f"/parking/sites/{site_id}/bays", headers=auth(who))
        assert response.status_code == status, (who, site_id)
    put = await api.put("/parking/sites/site-2/power-limit", json={"limit_a": 30}, headers=auth("operator_2"))
    assert put.status_code == 202
    assert (await api.put("/parking/sites/site-2/power-limit", json={"limit_a": 30},
                          headers=auth("technician_1"))).status_code == 404
    seen = await api.get("/parking/sites/site-2/power-limit", headers=auth("operator_2"))
    assert seen.json()["requested"]["limit_a"] == 30.0


@pytest.mark.parametrize("body", [{"limit_a": 0}, {}, {"limit_a": "forty", "colour": "red"}, b"limit_a=40"])
async def test_a_malformed_limit_is_explained_only_to_a_caller_who_may_change_it(
        parking: Parking, body: dict[str, Any] | bytes) -> None:
    await two_sites(parking)
    payload: dict[str, Any] = ({"content": body, "headers": {"content-type": "application/json"}}
                               if isinstance(body, bytes) else {"json": body})
    answers = {}
    for who in WHO:
        options = dict(payload)
        options["headers"] = {**options.get("headers", {}), **auth(who)}
        answers[who] = (await parking.api.put("/parking/sites/site-1/power-limit", **options)).status_code
    assert answers == {"anonymous": 401, "driver_a": 403, "driver_b": 403, "operator_1": 422, "operator_2": 404,
                       "technician_1": 403, "admin": 422}
    state = (await parking.api.get("/parking/sites/site-1/power-limit")).json()
    assert (state["status"], state["requested"]) == (None, None), "nothing was requested"


@pytest.mark.parametrize("authorization", [
    "Bearer not-a-token", "Basic YWRtaW46YWRtaW4=", "Bearer " + "x" * 20,
    "Bearer {expired}"])
async def test_a_missing_or_bad_token_is_refused_by_the_service_itself(parking: Parking, authorization: str) -> None:
    authorization = authorization.format(expired=token(PRINCIPALS["admin"], lifetime=timedelta(minutes=-5)))
    for route in ROUTES:
        response = await call(parking.api, route, "admin", headers={"Authorization": authorization})
        assert response.status_code == 401, (route, authorization)


async def test_the_platform_routes_and_the_openapi_body_need_no_token(parking: Parking) -> None:
    api = parking.api
    for path in ("/health", "/metrics"):
        assert (await api.get(path, headers={"Authorization": ""})).status_code == 200, path
    schema = (await api.get("/openapi.json", headers={"Authorization": ""})).json()
    put = schema["paths"]["/parking/sites/{site_id}/power-limit"]["put"]
    body = put["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"limit_a", "limit_w"}
