"""The gateway: who may pass (tokens, API keys, public paths), rate limits, routing, clear errors,
and what it never lets through (bodies too large, paths outside a prefix, redirects, stack traces)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from prometheus_client import generate_latest

from cloud.gateway.app import build_app, routes
from cloud.platform.cache import MemoryCache
from cloud.platform.settings import CloudSettings
from cloud.registry import spec
from tests.support.identity import PRINCIPALS, RUN_LONG, headers, token, verifier

API_KEY = "evk_machine-client-key"
exchanges: list[str] = []


def upstream(request: httpx.Request) -> httpx.Response:
    if request.url.host == "127.0.0.1" and request.url.port == 8102:
        return httpx.Response(200, json={"served_by": "vehicles", "path": request.url.path,
                                         "query": str(request.url.query, "ascii"),
                                         "authorization": request.headers.get("authorization")})
    if request.url.port == 8104 and request.url.path == "/auth/token":
        exchanges.append(request.content.decode())
        if API_KEY in request.content.decode():
            return httpx.Response(200, json={"access_token": token(PRINCIPALS["operator_1"]), "token_type": "bearer",
                                             "expires_in": 900})
        return httpx.Response(401, json={"status": 401, "title": "Unauthorized", "detail": "unknown API key"},
                              headers={"content-type": "application/problem+json"})
    if request.url.port == 8104:
        return httpx.Response(200, json={"served_by": "accounts", "path": request.url.path})
    raise httpx.ConnectError("connection refused", request=request)


async def client_for(settings: CloudSettings, *, as_: str | None = "driver_a") -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, cache=MemoryCache(), transport=httpx.MockTransport(upstream), verifier=verifier())
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw",
                              headers=headers(as_) if as_ else {}) as client:
        yield client


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(CloudSettings(rate_limit_per_minute=5)):
        yield client


async def test_routes_by_first_path_segment_with_query(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/vehicles/abc", params={"x": "1"})
    assert response.status_code == 200
    assert response.json() | {"authorization": None} == {"served_by": "vehicles", "path": "/vehicles/abc",
                                                         "query": "x=1", "authorization": None}


async def test_an_unreachable_service_is_a_502_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/charging/history/v1")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "charging" in response.json()["detail"]


async def test_an_unknown_prefix_is_a_404_problem(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/nothing/here")
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_too_many_requests_get_429_with_retry_after(gateway: httpx.AsyncClient) -> None:
    statuses = [(await gateway.get("/vehicles/x")).status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5
    assert statuses[5:] == [429, 429]
    limited = await gateway.get("/vehicles/x")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (await gateway.get("/health")).status_code == 200  # probes are never limited


async def test_a_verified_token_is_required_and_passed_on() -> None:
    async for client in client_for(CloudSettings(), as_=None):
        missing = await client.get("/vehicles/x")
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert (await client.get("/vehicles/x", headers={"Authorization": "Bearer nope"})).status_code == 401
        good = headers("driver_b")
        answer = await client.get("/vehicles/x", headers=good)
        assert answer.status_code == 200 and answer.json()["authorization"] == good["Authorization"]


async def test_an_api_key_is_exchanged_once_for_a_token_the_service_sees_instead() -> None:
    exchanges.clear()
    async for client in client_for(CloudSettings(), as_=None):
        key = {"Authorization": f"Bearer {API_KEY}"}
        first, second = await client.get("/vehicles/x", headers=key), await client.get("/vehicles/y", headers=key)
        assert (first.status_code, second.status_code) == (200, 200)
        forwarded = first.json()["authorization"]
        assert API_KEY not in forwarded and forwarded.startswith("Bearer ey")
        assert len(exchanges) == 1, "the exchanged token is cached until shortly before it expires"
        refused = await client.get("/vehicles/x", headers={"Authorization": "Bearer evk_revoked"})
        assert refused.status_code == 401 and refused.json()["detail"] == "unknown API key"


async def test_public_paths_of_a_service_need_no_token() -> None:
    async for client in client_for(CloudSettings(), as_=None):
        assert (await client.post("/auth/login", json={})).json() == {"served_by": "accounts", "path": "/auth/login"}
        assert (await client.get("/.well-known/jwks.json")).status_code == 200
        assert (await client.get("/accounts")).status_code == 401


def test_production_refuses_unsafe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="EVPARK_DATABASE_URL") as raised:
        CloudSettings(env="production")
    assert "EVPARK_AMQP_URL" in str(raised.value)
    monkeypatch.setenv("EVPARK_API_KEYS", ",")  # the old shared keys: refused, saying what replaced them
    with pytest.raises(ValueError, match="EVPARK_API_KEYS is no longer read"):
        CloudSettings(env="production", database_url="postgresql+asyncpg://db/x", amqp_url="amqp://mq/")


# --- under abuse (issue 11) -------------------------------------------------------------------

class Upstream:
    """A scripted service behind the gateway: records what reaches it, answers what a test sets."""

    def __init__(self) -> None:
        self.seen: list[httpx.Request] = []
        self.answer: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(
            200, json={"path": r.url.path, "query": str(r.url.query, "ascii")})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return self.answer(request)


async def scripted(settings: CloudSettings | None = None, *, peer: str = "127.0.0.1",
                   upstream: Upstream) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings or CloudSettings(), cache=MemoryCache(), transport=httpx.MockTransport(upstream),
                    verifier=verifier())
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(peer, 4711)),
                              base_url="http://gw") as client:
        yield client


@pytest.fixture
def service() -> Upstream:
    return Upstream()


@pytest.fixture
async def gw(service: Upstream) -> AsyncIterator[httpx.AsyncClient]:
    async for client in scripted(upstream=service):
        yield client


DRIVER = headers("driver_a", lifetime=RUN_LONG)


async def test_an_authenticated_body_over_1_mib_is_refused_413_before_any_service_sees_it(
        gw: httpx.AsyncClient, service: Upstream) -> None:
    big = b"x" * (1024 * 1024 + 1)
    declared = await gw.post("/vehicles/register", content=big, headers=DRIVER)
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(17):
            yield b"y" * 65536
    streamed = await gw.post("/vehicles/register", content=chunks(), headers=DRIVER)
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert declared.headers["content-type"] == "application/problem+json"
    assert service.seen == []
    assert (await gw.post("/vehicles/register", content=b"x" * 1024, headers=DRIVER)).status_code == 200


@pytest.mark.parametrize("path", ["/parking/..%2Fmetrics", "/parking/%2e%2e/metrics", "/parking/.%2E/metrics",
                                  "/parking/sites%2F..%2F..%2Fmetrics", "/parking/%5C..%5Cmetrics"])
async def test_a_path_cannot_leave_its_services_prefix(gw: httpx.AsyncClient, service: Upstream, path: str) -> None:
    response = await gw.get(path, headers=DRIVER)
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"
    assert service.seen == []


async def test_paths_reach_the_service_canonical(gw: httpx.AsyncClient, service: Upstream) -> None:
    answer = await gw.get("/vehicles/?plate=AB%201", headers=DRIVER)  # the trailing slash once gave a 307
    assert answer.status_code == 200
    assert service.seen[-1].url.raw_path == b"/vehicles?plate=AB%201"
    await gw.get("/vehicles//a%20b/", headers=DRIVER)
    assert service.seen[-1].url.raw_path == b"/vehicles/a%20b"


async def test_a_nul_in_the_path_or_query_is_a_422_not_a_5xx(gw: httpx.AsyncClient, service: Upstream) -> None:
    for path in ("/vehicles/%00", "/vehicles?plate=%00"):
        response = await gw.get(path, headers=DRIVER)
        assert response.status_code == 422, path
    assert service.seen == []


async def test_a_nul_in_a_json_string_is_a_422(gw: httpx.AsyncClient, service: Upstream) -> None:
    response = await gw.post("/vehicles/register", content=b'{"plate": "AB\\u00001", "id_tags": ["x", "\\u0000"]}',
                             headers={**DRIVER, "content-type": "application/json"})
    assert response.status_code == 422 and "NUL" in response.json()["detail"]
    assert [e["field"] for e in response.json()["errors"]] == ["plate", "id_tags.1"]
    fine = await gw.post("/vehicles/register", content=b'{"plate": "AB\\\\u00001"}',  # a backslash, then text
                         headers={**DRIVER, "content-type": "application/json"})
    assert fine.status_code == 200


async def test_an_upstream_redirect_address_or_stack_trace_is_never_passed_on(
        gw: httpx.AsyncClient, service: Upstream) -> None:
    service.answer = lambda r: httpx.Response(307, headers={"location": "http://127.0.0.1:8102/vehicles?plate=x",
                                                            "server": "uvicorn"})
    redirected = await gw.get("/vehicles", params={"plate": "x"}, headers=DRIVER)
    assert redirected.status_code == 502 and "location" not in redirected.headers
    assert "127.0.0.1" not in redirected.text and "server" not in redirected.headers
    service.answer = lambda r: httpx.Response(500, text='Traceback (most recent call last):\n  File "/app/x.py"')
    failed = await gw.get("/vehicles/v1", headers=DRIVER)
    assert failed.status_code == 500 and failed.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in failed.text and failed.headers["x-request-id"] in failed.json()["detail"]


async def test_only_idempotent_requests_are_retried(service: Upstream) -> None:
    drops = {"left": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        if drops["left"] > 0:
            drops["left"] -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={})

    service.answer = flaky
    async for client in scripted(upstream=service):
        drops["left"] = 1
        assert (await client.get("/vehicles/v1", headers=DRIVER)).status_code == 200
        assert len(service.seen) == 2, "a GET that could not be delivered is tried once more"
        service.seen.clear()
        drops["left"] = 1
        assert (await client.post("/vehicles/register", json={}, headers=DRIVER)).status_code == 502
        assert len(service.seen) == 1, "a POST is never sent twice"


async def test_a_slow_service_is_a_504_after_the_upstream_timeout(service: Upstream) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    service.answer = slow
    async for client in scripted(upstream=service):
        response = await client.get("/charging/history/v1", headers=DRIVER)
        assert response.status_code == 504 and "charging" in response.json()["detail"]


def test_remote_charger_commands_get_the_longer_timeout() -> None:
    from cloud.gateway.proxy import Upstreams

    upstreams = Upstreams(CloudSettings(), {"charging": "http://c"},
                          {"charging": ["/charging/chargers/{charger_id}/reset"]})
    assert upstreams.timeout_for("charging", "/charging/chargers/CP-1/reset").read == 30.0
    assert upstreams.timeout_for("charging", "/charging/history/v1").read == 10.0
    assert upstreams.timeout_for("charging", "/charging/chargers/CP-1/reset/x").read == 10.0


async def test_the_breaker_opens_after_5_failures_and_answers_503_without_calling(service: Upstream) -> None:
    service.answer = lambda r: httpx.Response(503, text="down")
    async for client in scripted(CloudSettings(breaker_reset_seconds=0.3), upstream=service):
        statuses = [(await client.get("/vehicles/v1", headers=DRIVER)).status_code for _ in range(5)]
        assert statuses == [503] * 5 and len(service.seen) == 5
        opened = await client.get("/vehicles/v1", headers=DRIVER)
        assert opened.status_code == 503 and int(opened.headers["retry-after"]) >= 1
        assert "stopped calling" in opened.json()["detail"] and len(service.seen) == 5
        service.answer = lambda r: httpx.Response(200, json={})
        await asyncio.sleep(0.35)
        assert (await client.get("/vehicles/v1", headers=DRIVER)).status_code == 200  # half-open, then closed
        assert (await client.get("/charging/history/v1", headers=DRIVER)).status_code == 200, "one breaker each"


async def test_each_caller_has_its_own_budget_behind_one_address(service: Upstream) -> None:
    async for client in scripted(CloudSettings(rate_limit_per_minute=3), upstream=service):
        a = [(await client.get("/vehicles/x", headers=DRIVER)).status_code for _ in range(4)]
        b = [(await client.get("/vehicles/x", headers=headers("driver_b"))).status_code for _ in range(3)]
        assert (a, b) == ([200, 200, 200, 429], [200, 200, 200])


async def test_writes_and_public_routes_have_their_own_budgets(service: Upstream) -> None:
    settings = CloudSettings(rate_limit_per_minute=100, rate_limit_writes_per_minute=2,
                             rate_limit_public_per_minute=2)
    async for client in scripted(settings, upstream=service):
        writes = [(await client.post("/vehicles/register", json={}, headers=DRIVER)).status_code for _ in range(3)]
        assert writes == [200, 200, 429]
        assert (await client.get("/vehicles/x", headers=DRIVER)).status_code == 200
        logins = [(await client.post("/auth/login", json={})).status_code for _ in range(3)]
        assert logins == [200, 200, 429]


async def test_failed_authentications_are_limited_per_address(service: Upstream) -> None:
    async for client in scripted(CloudSettings(rate_limit_public_per_minute=3), upstream=service):
        tries = [(await client.get("/vehicles/x", headers={"Authorization": "Bearer guess"})).status_code
                 for _ in range(4)]
        assert tries == [401, 401, 401, 429]


async def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(service: Upstream) -> None:
    settings = CloudSettings(rate_limit_public_per_minute=2, trusted_proxies=["10.0.0.0/8"])
    async for behind_proxy in scripted(settings, peer="10.1.2.3", upstream=service):
        rotating = [(await behind_proxy.post("/auth/login", json={}, headers={
            "X-Forwarded-For": f"198.51.100.{i}, 203.0.113.7"})).status_code for i in range(3)]
        assert rotating == [200, 200, 429], "what the client adds left of the proxy's entry is not believed"
        other = await behind_proxy.post("/auth/login", json={}, headers={"X-Forwarded-For": "203.0.113.8"})
        assert other.status_code == 200, "another client behind the same proxy has its own budget"
        assert service.seen[-1].headers["x-forwarded-for"] == "203.0.113.8"
    async for direct in scripted(settings, peer="192.0.2.1", upstream=service):
        spoofed = [(await direct.post("/auth/login", json={}, headers={
            "X-Forwarded-For": f"198.51.100.{i}"})).status_code for i in range(3)]
        assert spoofed == [200, 200, 429], "an untrusted peer's X-Forwarded-For changes nothing"
        assert service.seen[-1].headers["x-forwarded-for"] == "192.0.2.1"


async def test_the_request_id_goes_to_the_service_and_back(gw: httpx.AsyncClient, service: Upstream) -> None:
    given = await gw.get("/vehicles/v1", headers={**DRIVER, "X-Request-ID": "trace-0001-abcd"})
    assert given.headers["x-request-id"] == "trace-0001-abcd"
    assert service.seen[-1].headers["x-request-id"] == "trace-0001-abcd"
    injected = await gw.get("/vehicles/v1", headers={**DRIVER, "X-Request-ID": "x\" injected=1"})
    assert injected.headers["x-request-id"] != "x\" injected=1" and len(injected.headers["x-request-id"]) == 32
    assert service.seen[-1].headers["x-request-id"] == injected.headers["x-request-id"]


async def test_cors_comes_from_settings(service: Upstream) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}
    async for client in scripted(CloudSettings(cors_origins=["https://app.example"]), upstream=service):
        allowed = await client.options("/vehicles/x", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = await client.options("/vehicles/x", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    async for client in scripted(upstream=service):
        assert "access-control-allow-origin" not in (await client.options("/vehicles/x", headers=preflight)).headers


async def test_metrics_stay_bounded_under_made_up_methods_and_paths(gw: httpx.AsyncClient) -> None:
    def series() -> set[str]:
        return {line.split(" ")[0] for line in generate_latest().decode().splitlines()
                if line.startswith("evpark_http_requests_total{") and 'service="gateway"' in line}

    before = series()
    for i in range(300):
        await gw.request(f"M{i}X", f"/made-up-{i}/x{i}", headers=DRIVER)
        await gw.get(f"/vehicles/id-{i}", headers=DRIVER)
        await gw.get(f"/nothing-{i}")
    after = series()
    assert len(after - before) <= 6, sorted(after - before)
    text = generate_latest().decode()
    assert "made-up-1" not in text and "M1X" not in text and "id-1" not in text


async def test_the_ops_status_is_neither_served_nor_routed_from_outside(service: Upstream) -> None:
    async for client in scripted(upstream=service):
        for who in (None, "admin"):
            answer = await client.get("/status", headers=headers(who) if who else {})
            assert answer.status_code == 404, answer.text
            assert answer.json()["detail"] == "no service serves /status"
        assert (await client.options("/status")).status_code == 404, "the gateway serves none of its own either"
    assert service.seen == [], "no service was asked"


def test_no_service_may_claim_the_ops_status_path(monkeypatch: pytest.MonkeyPatch) -> None:
    claiming = dataclasses.replace(spec("vehicles"), prefixes=("/vehicles", "/status"))
    monkeypatch.setattr("cloud.gateway.app.domain_services", lambda: [claiming])
    with pytest.raises(RuntimeError, match="ops status"):
        routes()
