"""The ops figures of one process, answered at ``GET /status`` beside ``/health`` and ``/ready``.

``/status`` is for the cluster, not the public: the gateway routes no ``/status`` (a request for it
there is a 404, as for any path no service claims), and analytics' ``GET /metrics/health`` shows
what every service answers here. Each figure is read when asked, with a short bound; one that
cannot be read (its database or broker away) is ``null``, never a 5xx.

* ``outbox_backlog``: events committed to the service's outbox that the relay has not yet had
  confirmed by the bus;
* ``parked_messages``: rows of its parked-message table (``evpark events parked``);
* ``consumer_lag``: messages waiting at the broker in its queues (``queues``: per queue), not yet
  delivered to it (up to the prefetch more may be in its hands). The in-process bus hands each event
  to its consumers as it is published, so nothing ever waits there: 0;
* ``error_rate``: the share of its HTTP answers of the last five minutes that were 5xx
  (:class:`ErrorWindow`, fed by the platform's request guard; the ops paths themselves are not
  counted), with ``requests_5m`` and ``errors_5m``; null without a request in the window;
* ``uplink``: per site, the envelopes its edge numbered (its high-water marks) that this service's
  MQTT link has not received, by category, and when the edge was last heard
  (:meth:`cloud.platform.delivery.Delivery.backlog`); null for a service that reads no MQTT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import structlog
from fastapi import FastAPI
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from cloud.platform.db import Database
from cloud.platform.delivery import SiteUplink
from cloud.platform.tables import outbox, parked

log = structlog.get_logger(__name__)

STATUS_PATH = "/status"
OPS_ROUTES = frozenset({"/health", "/ready", "/metrics", STATUS_PATH})
"""Routes the error rate leaves out: a readiness probe answering 503 is not an error of the API."""
FIGURE_TIMEOUT_S = 1.0

T = TypeVar("T")


class ErrorWindow:
    """How many HTTP answers, and how many of them 5xx, over the last ``seconds``.

    The window is ``buckets`` slots of ``seconds / buckets`` each (a ring): recording an answer is
    O(1), reading the window O(buckets); the oldest slot leaves as a new one starts, so the figures
    cover between ``seconds - seconds / buckets`` and ``seconds``.
    """

    def __init__(self, seconds: float = 300.0, buckets: int = 30,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if seconds <= 0 or buckets < 1:
            raise ValueError("need seconds > 0 and at least one bucket")
        self.seconds = seconds
        self._width = seconds / buckets
        self._clock = clock
        self._slots = [[-1, 0, 0] for _ in range(buckets)]  # [slot number, answers, 5xx answers]

    def record(self, status: int) -> None:
        number = int(self._clock() // self._width)
        slot = self._slots[number % len(self._slots)]
        if slot[0] != number:
            slot[0], slot[1], slot[2] = number, 0, 0
        slot[1] += 1
        if status >= 500:
            slot[2] += 1

    def counts(self) -> tuple[int, int]:
        """(answers, 5xx answers) in the window."""
        now = int(self._clock() // self._width)
        answers = errors = 0
        for number, seen, failed in self._slots:
            if now - len(self._slots) < number <= now:
                answers += seen
                errors += failed
        return answers, errors

    def rate(self) -> float | None:
        answers, errors = self.counts()
        return round(errors / answers, 4) if answers else None


class OpsStatus(BaseModel):
    """What ``GET /status`` answers (see the module docstring)."""

    service: str
    at: datetime
    outbox_backlog: int | None = Field(default=None, description="events in the outbox not yet published")
    parked_messages: int | None = Field(default=None, description="rows of the parked-message table")
    consumer_lag: int | None = Field(default=None, description="messages waiting in its queues at the broker "
                                     "(0 on the in-process bus, which delivers as it publishes)")
    queues: dict[str, int | None] = Field(default_factory=dict, description="consumer lag per queue")
    requests_5m: int = Field(description="HTTP answers of the last 5 minutes (ops paths left out)")
    errors_5m: int = Field(description="of them, 5xx")
    error_rate: float | None = Field(description="errors_5m / requests_5m; null without a request")
    uplink: dict[str, SiteUplink] | None = Field(
        default=None, description="per site: envelopes its edge numbered that did not arrive here, by category, "
        "and when the edge was last heard; null: the service reads no MQTT (or end-to-end delivery is off)")


StatusFigures = Callable[[FastAPI], Awaitable[dict[str, Any]]]
"""A process's own figures for ``/status`` (a service's: :func:`service_figures`)."""


def status_of(app: FastAPI, figures: dict[str, Any]) -> OpsStatus:
    window: ErrorWindow = app.state.error_window
    answers, errors = window.counts()
    return OpsStatus(service=app.state.service_name, at=datetime.now(UTC), requests_5m=answers, errors_5m=errors,
                     error_rate=window.rate(), **figures)


async def stored_backlog(db: Database) -> tuple[int, int]:
    """(outbox rows not yet published, parked messages) of a service's database."""
    async with db.session() as session:
        waiting = (await session.execute(select(func.count()).select_from(outbox))).scalar_one()
        stuck = (await session.execute(select(func.count()).select_from(parked))).scalar_one()
    return int(waiting), int(stuck)


async def _bounded(what: str, read: Awaitable[T]) -> T | None:
    try:
        async with asyncio.timeout(FIGURE_TIMEOUT_S):
            return await read
    except Exception as exc:  # its database or broker away: the figure is unknown, the answer still 200
        log.warning("ops figure unavailable", figure=what, error=str(exc) or repr(exc))
        return None


async def service_figures(app: FastAPI) -> dict[str, Any]:
    """The figures of a service built on the platform (its database, bus queues and MQTT link)."""
    platform = app.state.platform
    link = getattr(app.state, "mqtt_link", None)
    delivery = getattr(link, "delivery", None)
    stored, queues, uplink = await asyncio.gather(
        _bounded("stored backlog", stored_backlog(platform.db)),
        _bounded("consumer lag", platform.bus.waiting([consumer.queue for consumer in platform.consumers])),
        _bounded("uplink", delivery.backlog()) if delivery is not None else asyncio.sleep(0, None))
    lags = list((queues or {}).values())
    return {"outbox_backlog": None if stored is None else stored[0],
            "parked_messages": None if stored is None else stored[1],
            "queues": queues or {},
            "consumer_lag": None if queues is None or None in lags else sum(v for v in lags if v is not None),
            "uplink": uplink}
