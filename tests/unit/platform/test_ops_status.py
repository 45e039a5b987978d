"""``GET /status``: the error rate is the share of 5xx answers of the last five minutes, kept in a small
ring of time buckets fed by the request guard; the ops paths themselves are not counted."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Response

from cloud.platform.app import create_app, problem
from cloud.platform.ops import ErrorWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_counts_the_5xx_answers_of_the_last_five_minutes() -> None:
    clock = Clock()
    window = ErrorWindow(seconds=300, buckets=30, clock=clock)
    for status in (200, 201, 404, 500, 503):
        window.record(status)
    assert (window.counts(), window.rate()) == ((5, 2), 0.4)
    clock.now += 150
    window.record(200)
    window.record(502)
    assert window.counts() == (7, 3)
    clock.now += 160  # the first answers are older than five minutes now, the later ones are not
    assert (window.counts(), window.rate()) == ((2, 1), 0.5)
    clock.now += 300
    assert (window.counts(), window.rate()) == ((0, 0), None), "no request in the window: no rate"


def test_a_slot_reused_after_a_lap_of_the_ring_starts_from_zero() -> None:
    clock = Clock()
    window = ErrorWindow(seconds=60, buckets=6, clock=clock)
    window.record(500)
    clock.now += 60  # the same slot of the ring, one lap later
    window.record(200)
    assert window.counts() == (1, 0)


async def test_a_route_answering_500_raises_the_error_rate_and_the_ops_paths_do_not_count() -> None:
    router = APIRouter()

    @router.get("/fine")
    async def fine() -> dict[str, bool]:
        return {"ok": True}

    @router.get("/broken")
    async def broken() -> Response:
        return problem(500, "Internal Server Error")

    app = create_app("bare", routers=[router], openapi=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bare") as client:
        before = (await client.get("/status")).json()
        for path in ("/fine", "/fine", "/fine", "/broken", "/health", "/ready", "/metrics", "/status"):
            await client.get(path)
        assert (await client.get("/broken")).status_code == 500
        status = (await client.get("/status")).json()
    assert (before["requests_5m"], before["error_rate"]) == (0, None)
    assert (status["service"], status["requests_5m"], status["errors_5m"], status["error_rate"]) == (
        "bare", 5, 2, 0.4)
    # no database, bus nor MQTT link of its own: those figures are unknown, not zero
    assert (status["outbox_backlog"], status["parked_messages"], status["consumer_lag"], status["uplink"]) == (
        None, None, None, None)
