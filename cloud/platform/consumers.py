"""Typed event consumers: the envelope is decoded into the handler's model, or parked with the reason.

A service consumes with :meth:`cloud.platform.runtime.Platform.consume`, giving one handler per
event model it reads. Each delivery is decoded with :func:`cloud.contracts.decode`: a message of
a major version the service does not know, or one whose payload fails the model, is parked
(:class:`~cloud.platform.ports.PoisonEvent`) with the reason; the handler never sees it and the
queue goes on. The same decoding runs when ``evpark events replay`` re-delivers a parked message
after a fix, so a replay is handled exactly like a first delivery.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from cloud.contracts.base import ContractViolation, Event, EventBody, Received, decode
from cloud.platform.ports import PoisonEvent

Handler = Callable[[Received[Any]], Awaitable[None]]


class TypedConsumer:
    def __init__(self, queue: str, handlers: Mapping[type[EventBody], Handler]) -> None:
        if not handlers:
            raise ValueError(f"queue {queue!r} needs at least one handler")
        self.queue = queue
        self._handlers = dict(handlers)

    @property
    def models(self) -> tuple[type[EventBody], ...]:
        return tuple(self._handlers)

    @property
    def routing_keys(self) -> list[str]:
        return sorted({model.NAME for model in self._handlers})

    async def __call__(self, event: Event) -> None:
        """The bus's handler: decode, then call the model's handler; contract breaks are poison."""
        try:
            received = decode(event, self._handlers)
        except ContractViolation as exc:
            raise PoisonEvent(str(exc)) from exc
        if event.request_id is None:
            await self._handlers[type(received.body)](received)
            return
        with structlog.contextvars.bound_contextvars(request_id=event.request_id):  # the request, end to end
            await self._handlers[type(received.body)](received)

    async def replay(self, _source: str, payload: str) -> None:
        """Re-deliver a parked event (its JSON envelope); raises if it still cannot be handled."""
        event = Event.model_validate_json(payload)
        received = decode(event, self._handlers)
        await self._handlers[type(received.body)](received)
