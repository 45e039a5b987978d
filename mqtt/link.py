"""The state of a site's link, on its retained status topic (``Topics.status``).

The edge publishes, retained and with QoS 1, on ``<root>/sites/<site_id>/status``:

* ``online`` right after it connects (before it drains its outbox, so a backlog does not delay it);
* ``offline`` with reason ``stopped`` just before a clean disconnect (the edge is shutting down:
  MQTT 3.1.1 §3.1.2.5 discards the will on a DISCONNECT, so the edge says it itself);
* ``offline`` with reason ``lost`` as its **last will**, set in CONNECT: the broker publishes it
  when the connection ends without a DISCONNECT (process killed, host or network gone, keepalive
  missed: at most 1.5 times the keepalive after the edge's last packet, §3.1.2.10).

Every message names the connection it belongs to (``connection_id``, new for each CONNECT, and
``connected_at``), so a receiver can order them: an ``offline`` of an older connection that
arrives after the ``online`` of a newer one changes nothing. These are not envelopes (no id, no
seq: the will is written before anything happens, and it must not take a place in the outbox's
sequence); the state is idempotent, so the retained copy a subscriber gets again is harmless.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mqtt.payloads import UtcDatetime

ONLINE: Final = "online"
OFFLINE: Final = "offline"
LinkState = Literal["online", "offline"]
LinkReason = Literal["connected", "stopped", "lost"]


class LinkStatus(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    state: LinkState
    reason: LinkReason = Field(description="connected (online), stopped (clean shutdown), lost (the last will)")
    connection_id: str = Field(min_length=1, max_length=64, description="new for every connection of the edge")
    connected_at: UtcDatetime = Field(description="when that connection was made (edge clock)")
    edge_version: str | None = Field(default=None, max_length=64)

    @classmethod
    def for_connection(cls, *, edge_version: str | None = None, now: datetime | None = None) -> LinkStatus:
        """The ``online`` status of a new connection; :meth:`offline` gives its will and its goodbye."""
        return cls(state=ONLINE, reason="connected", connection_id=uuid.uuid4().hex,
                   connected_at=now or datetime.now(UTC), edge_version=edge_version)

    def offline(self, reason: Literal["stopped", "lost"]) -> LinkStatus:
        return self.model_copy(update={"state": OFFLINE, "reason": reason})

    def to_bytes(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


class MalformedStatus(ValueError):
    """A status payload that does not follow :class:`LinkStatus`."""


def decode_status(payload: bytes | str) -> LinkStatus:
    try:
        return LinkStatus.model_validate_json(payload)
    except ValidationError as exc:
        raise MalformedStatus(f"not a link status: {exc.errors(include_url=False)}") from None
