"""The typed events between cloud services: envelope, body base class, catalogue, decoding.

Every event is one pydantic model (an :class:`EventBody` subclass) declared with
:func:`event`, which names it (``charging.completed``: the routing key; its first word names
the topic exchange, ``charging.events``) and gives it a ``major.minor`` schema version. On the
wire it travels inside an :class:`Event` envelope (id, name, version, time, source, payload).

Versioning rules (the consumer's side, :func:`decode`):

- a new **minor** version only adds optional fields: a consumer that knows ``1.0`` reads ``1.3``
  and ignores what it does not know;
- a new **major** version is a different model; a consumer that knows no model of that major
  cannot read it, and the platform parks the message with that reason (it never guesses);
- a payload that fails its model's validation is parked with the validation errors.

Exception tree::

    ContractViolation        an event that breaks its contract (parked, never handled)
    ├── UnknownEvent         no model has this name (publishing it is refused)
    ├── UnknownMajor         the consumer knows no model of this major version
    └── InvalidPayload       the payload fails the model's validation
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_NAME = re.compile(r"^[a-z][a-z_]*\.[a-z][a-z_]*$")
_VERSION = re.compile(r"^(\d+)\.(\d+)$")


class ContractViolation(Exception):
    """An event that breaks its contract: park it with this reason."""


class UnknownEvent(ContractViolation):
    pass


class UnknownMajor(ContractViolation):
    pass


class InvalidPayload(ContractViolation):
    pass


def parse_version(version: str) -> tuple[int, int]:
    """``"1.2"`` → ``(1, 2)``; anything else is a :class:`ContractViolation`."""
    match = _VERSION.fullmatch(version)
    if match is None:
        raise ContractViolation(f"event version {version!r} is not 'major.minor'")
    return int(match.group(1)), int(match.group(2))


def exchange_for(routing_key: str) -> str:
    """``vehicle.registered`` → ``vehicle.events``."""
    domain = routing_key.split(".", 1)[0]
    if not domain or domain == routing_key:
        raise ValueError(f"event name {routing_key!r} must look like '<domain>.<what_happened>'")
    return f"{domain}.events"


class EventBody(BaseModel):
    """Base of every event's payload model. Subclasses are declared with :func:`event`.

    Frozen; unknown fields are ignored so that a newer minor version reads with an older model.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    NAME: ClassVar[str] = ""
    VERSION: ClassVar[str] = ""
    SUMMARY: ClassVar[str] = ""

    @classmethod
    def major(cls) -> int:
        return parse_version(cls.VERSION)[0]

    @classmethod
    def exchange(cls) -> str:
        return exchange_for(cls.NAME)


B = TypeVar("B", bound=EventBody)

CATALOGUE: dict[str, dict[int, type[EventBody]]] = {}
"""Every declared event: name → major version → model."""


def event(name: str, version: str, summary: str) -> Callable[[type[B]], type[B]]:
    """Class decorator: declare ``cls`` as the model of event ``name`` at ``version``."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"event name {name!r} must look like '<domain>.<what_happened>' in snake_case")
    major, _ = parse_version(version)

    def declare(cls: type[B]) -> type[B]:
        known = CATALOGUE.setdefault(name, {})
        if major in known and known[major] is not cls:
            raise ValueError(f"{name} v{major} is declared twice ({known[major].__name__}, {cls.__name__})")
        cls.NAME, cls.VERSION, cls.SUMMARY = name, version, summary
        known[major] = cls
        return cls

    return declare


def all_models() -> list[type[EventBody]]:
    """Every declared model, by name then major version."""
    return [CATALOGUE[name][major] for name in sorted(CATALOGUE) for major in sorted(CATALOGUE[name])]


class Event(BaseModel):
    """The envelope an event travels in, on both buses and in the outbox.

    ``name`` is the routing key; ``version`` the ``major.minor`` of the payload's schema (absent
    on events written before versions existed: ``1.0``).
    """

    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    name: str
    version: str = "1.0"
    occurred_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    source: str = ""
    payload: dict[str, Any] = Field(default_factory=dict)
    request_id: str | None = None
    """The HTTP request (``X-Request-ID``) that caused the event, if one did: its logs and the
    consumers' logs carry it, and so do the events they emit in turn."""

    @property
    def exchange(self) -> str:
        return exchange_for(self.name)

    @classmethod
    def of(cls, body: EventBody, *, source: str, occurred_at: datetime | None = None) -> Event:
        """The envelope of a typed body; refuses a body whose model is not declared."""
        model = type(body)
        if not model.VERSION or CATALOGUE.get(model.NAME, {}).get(model.major()) is not model:
            raise UnknownEvent(f"{model.__name__} is not a declared event; declare it with @event(...)")
        return cls(name=model.NAME, version=model.VERSION, source=source,
                   occurred_at=occurred_at or datetime.now(UTC), payload=body.model_dump(mode="json"))


@dataclass(frozen=True)
class Received(Generic[B]):
    """An event as a consumer's handler gets it: the envelope's facts and the typed body."""

    id: uuid.UUID
    name: str
    version: str
    occurred_at: datetime
    source: str
    body: B


def decode(event: Event, models: Iterable[type[EventBody]]) -> Received[EventBody]:
    """The typed body of ``event`` read with the consumer's ``models`` (the ones it handles).

    Raises :class:`UnknownMajor` when the consumer has models of this name but none of the
    event's major version, and :class:`InvalidPayload` when the payload fails validation.
    """
    major, _ = parse_version(event.version)
    of_name = {m.major(): m for m in models if event.name == m.NAME}
    if not of_name:
        raise UnknownEvent(f"this consumer has no model of {event.name!r}")
    model = of_name.get(major)
    if model is None:
        known = ", ".join(str(m) for m in sorted(of_name))
        raise UnknownMajor(f"{event.name} version {event.version}: this consumer reads major version(s) {known}")
    try:
        body = model.model_validate(event.payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'payload'}: {e['msg']}"
                             for e in exc.errors()[:5])
        raise InvalidPayload(f"{event.name} {event.version} fails its schema: {problems}") from exc
    return Received(id=event.id, name=event.name, version=event.version, occurred_at=event.occurred_at,
                    source=event.source, body=body)

