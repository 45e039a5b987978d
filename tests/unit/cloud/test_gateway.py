"""The gateway: API keys, rate limits, routing and clear errors when a service is away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from cloud.gateway.app import build_app
from cloud.platform.cache import MemoryCache
from cloud.platform.settings import CloudSettings


def upstream(request: httpx.Request) -> httpx.Response:
    if request.url.host == "127.0.0.1" and request.url.port == 8102:
        return httpx.Response(200, json={"served_by": "vehicles", "path": request.url.path,
                                         "query": str(request.url.query, "ascii")})
    raise httpx.ConnectError("connection refused", request=request)


async def client_for(settings: CloudSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(settings, cache=MemoryCache(), transport=httpx.MockTransport(upstream))
    async with app.router.lifespan_context(app), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
        yield client


@pytest.fixture
async def gateway() -> AsyncIterator[httpx.AsyncClient]:
    async for client in client_for(CloudSettings(rate_limit_per_minute=5)):
        yield client


async def test_routes_by_first_path_segment_with_query(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/vehicles/abc", params={"x": "1"})
    assert response.status_code == 200
    assert response.json() == {"served_by": "vehicles", "path": "/vehicles/abc", "query": "x=1"}


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


async def test_api_keys_are_required_when_configured() -> None:
    from pydantic import SecretStr

    async for client in client_for(CloudSettings(api_keys=SecretStr("k1, k2"))):
        assert (await client.get("/vehicles/x")).status_code == 401
        assert (await client.get("/vehicles/x", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await client.get("/vehicles/x", headers={"Authorization": "Bearer k2"})).status_code == 200


def test_production_refuses_unsafe_defaults() -> None:
    with pytest.raises(ValueError, match="EVPARK_API_KEYS") as raised:
        CloudSettings(env="production")
    assert "EVPARK_DATABASE_URL" in str(raised.value)
