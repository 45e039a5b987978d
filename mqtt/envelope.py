"""The envelope every uplink message travels in, and the command/result pair going down.

An envelope carries a globally unique ``id`` (the cloud treats a repeated id as already
done), the ``site_id``, the ``store_id`` of the edge database that wrote it, a ``seq`` that
only grows within that store, a UTC ``ts``, a ``type`` and a typed ``body``.

``store_id`` is a random id (32 lowercase hex digits, a uuid4) created with the edge's
database and kept in it: it survives restarts, and a replaced database (a new disk, a lost
volume) gets a new one. A new store starts ``seq`` and OCPP transaction ids at 1 again, so
the cloud keys sequences and sessions by (site, store). ``None`` only in envelopes of edges
older than the field; the cloud files those under the site's "legacy" store.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from mqtt.payloads import COMMAND_BODIES, UPLINK_BODIES, CommandStatus, UtcDatetime, _Body
from mqtt.topics import validate_site_id

STORE_ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
"""What a ``store_id`` may look like (the edge writes ``uuid.uuid4().hex``)."""
_STORE_ID = re.compile(STORE_ID_PATTERN)


class MalformedMessage(ValueError):
    """A payload that does not follow the contract. Park it; retrying cannot fix it."""


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    site_id: str
    store_id: str | None = Field(default=None, pattern=STORE_ID_PATTERN)
    """The edge database that wrote the envelope; None only from edges older than the field."""
    seq: int = Field(ge=1)
    category_seq: int | None = Field(default=None, ge=1)
    """The envelope's place in its category (:func:`mqtt.topics.category_of`) of this store: 1, 2, 3, …
    with no hole, so a cloud service that reads a category sees what it missed (see "Delivery" in
    mqtt/README.md). None only from edges older than the field (they are not checked for gaps)."""
    ts: UtcDatetime
    type: str
    body: dict[str, Any]

    @classmethod
    def wrap(cls, site_id: str, seq: int, body: _Body | CommandResult, *, id: uuid.UUID | None = None,
             ts: datetime | None = None, store_id: str | None = None,
             category_seq: int | None = None) -> Envelope:
        validate_site_id(site_id)
        return cls(id=id or uuid.uuid4(), site_id=site_id, store_id=store_id, seq=seq, category_seq=category_seq,
                   ts=ts or datetime.now(UTC), type=body.TYPE, body=body.model_dump(mode="json"))

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def envelope_bytes(site_id: str, seq: int, message_type: str, body: Mapping[str, Any], *, id: uuid.UUID,
                   ts: datetime, store_id: str | None, category_seq: int | None = None) -> bytes:
    """``Envelope(id=id, site_id=site_id, store_id=store_id, seq=seq, ts=ts, type=message_type,
    body=body).to_bytes()``, byte for byte, without building the model (the relay's hot path: one call
    per outbox row).

    ``body`` must already be the JSON form of its type (an outbox row: its body model validated it when
    the row was written), with string keys. The envelope's own fields are checked as the model checks
    them; ValueError if one is wrong.
    """
    if type(seq) is not int or seq < 1:
        raise ValueError(f"envelope seq must be an integer >= 1, not {seq!r}")
    if category_seq is not None and (type(category_seq) is not int or category_seq < 1):
        raise ValueError(f"envelope category_seq must be an integer >= 1, not {category_seq!r}")
    if ts.utcoffset() is None:
        raise ValueError("envelope ts must carry a UTC offset")
    validate_site_id(site_id)
    if store_id is not None and (type(store_id) is not str or not _STORE_ID.fullmatch(store_id)):
        raise ValueError(f"envelope store_id must match {STORE_ID_PATTERN}, not {store_id!r}")
    # pydantic-core's serializer is the one model_dump_json uses: same separators, escaping, float,
    # datetime and UUID forms, and the fields in the model's order.
    return to_json({"id": id, "site_id": site_id, "store_id": store_id, "seq": seq,
                    "category_seq": category_seq, "ts": ts, "type": message_type, "body": body})


class CommandResult(BaseModel):
    """Body of a ``command.result`` envelope: answers the command with the same id."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str] = "command.result"
    command_id: uuid.UUID
    command_type: str
    status: CommandStatus
    detail: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


UPLINK_BODIES[CommandResult.TYPE] = CommandResult  # type: ignore[assignment]


class Command(BaseModel):
    """A cloud → edge command. The edge refuses it (status ``expired``) after ``expires_at``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: uuid.UUID
    site_id: str
    type: str
    issued_at: UtcDatetime
    expires_at: UtcDatetime
    body: dict[str, Any]

    @classmethod
    def new(cls, site_id: str, body: _Body, *, ttl: timedelta = timedelta(minutes=5),
            now: datetime | None = None) -> Command:
        now = now or datetime.now(UTC)
        return cls(id=uuid.uuid4(), site_id=validate_site_id(site_id), type=body.TYPE,
                   issued_at=now, expires_at=now + ttl, body=body.model_dump(mode="json"))

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires_at

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


def decode_envelope(payload: bytes | str) -> Envelope:
    """Parse and validate an uplink envelope including its typed body."""
    try:
        envelope = Envelope.model_validate_json(payload)
        parse_body(envelope.type, envelope.body, UPLINK_BODIES)
    except (ValidationError, ValueError) as exc:
        raise MalformedMessage(_describe(exc)) from exc
    return envelope


def decode_command(payload: bytes | str) -> Command:
    try:
        command = Command.model_validate_json(payload)
        parse_body(command.type, command.body, COMMAND_BODIES)
    except (ValidationError, ValueError) as exc:
        raise MalformedMessage(_describe(exc)) from exc
    return command


def parse_body(message_type: str, body: dict[str, Any],
               registry: Mapping[str, type[BaseModel]] | None = None) -> Any:
    """The typed body model for ``message_type``; raises MalformedMessage when it does not fit."""
    if registry is None:
        registry = {**UPLINK_BODIES, **COMMAND_BODIES}
    model = registry.get(message_type)
    if model is None:
        raise MalformedMessage(f"unknown message type {message_type!r}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise MalformedMessage(f"{message_type}: {_describe(exc)}") from exc


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()[:5]
        )
    return str(exc)
