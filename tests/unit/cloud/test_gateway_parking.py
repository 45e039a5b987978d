"""The gateway routes the parking service's site, usage and power-limit paths, bodies and keys included."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from cloud.gateway.app import build_app
from cloud.platform.cache import MemoryCache
from cloud.platform.settings import CloudSettings
from tests.support.identity import RUN_LONG, headers, verifier

PROBLEM = {"type": "about:blank", "title": "Invalid request", "status": 422, "detail": "limit_a: bad",
           "errors": [{"field": "limit_a", "message": "bad"}]}


def parking(request: httpx.Request) -> httpx.Response:
    if request.url.port != 8103:
        raise httpx.ConnectError("connection refused", request=request)
    if request.content == b'{"limit_a": -1}':
        return httpx.Response(422, json=PROBLEM, headers={"content-type": "application/problem+json"})
    return httpx.Response(202 if request.method == "PUT" else 200, json={
        "method": request.method, "path": request.url.path, "query": request.url.query.decode(),
        "body": json.loads(request.content) if request.content else None,
        "content_type": request.headers.get("content-type"), "authorization": request.headers.get("authorization")})


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(CloudSettings(), cache=MemoryCache(), transport=httpx.MockTransport(parking), verifier=verifier())
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client


KEY = headers("operator_1", lifetime=RUN_LONG)


async def test_a_power_limit_put_reaches_parking_with_its_body(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.put("/parking/sites/s1/power-limit", json={"limit_a": 40})).status_code == 401
    response = await gateway.put("/parking/sites/s1/power-limit", json={"limit_a": 40}, headers=KEY)
    assert response.status_code == 202
    seen = response.json()
    assert (seen["method"], seen["path"], seen["body"]) == ("PUT", "/parking/sites/s1/power-limit", {"limit_a": 40})
    assert seen["content_type"] == "application/json"


async def test_the_services_problem_passes_through(gateway: httpx.AsyncClient) -> None:
    response = await gateway.put("/parking/sites/s1/power-limit", content=b'{"limit_a": -1}',
                                 headers={**KEY, "content-type": "application/json"})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == PROBLEM


@pytest.mark.parametrize("path", ["/parking/sites/s1", "/parking/sites/s1/power-limit"])
async def test_site_paths_reach_parking(gateway: httpx.AsyncClient, path: str) -> None:
    assert (await gateway.get(path)).status_code == 401
    response = await gateway.get(path, headers=KEY)
    assert (response.status_code, response.json()["path"]) == (200, path)


async def test_a_repeated_query_parameter_keeps_every_value(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/parking/sites/s1/bays?usage=idle&usage=overstay", headers=KEY)
    assert response.json()["query"] == "usage=idle&usage=overstay"
