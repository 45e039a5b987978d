"""The gateway: who may pass (tokens, API keys, public paths), rate limits, routing, clear errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cloud.gateway.app import build_app
from cloud.platform.cache import MemoryCache
from cloud.platform.settings import CloudSettings
from tests.support.identity import PRINCIPALS, headers, token, verifier

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
