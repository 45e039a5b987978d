"""Typed bodies of the envelopes and commands.

Units are fixed by the contract: energy in Wh as integers, power in W, times in UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp must carry a UTC offset")
    return value


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]

METER_MAX_WH = 999_999_999_999
"""The largest energy figure (Wh) the contract carries: every meter value, meterStart/meterStop and
energy. Under 1 TWh, so no real meter reaches it, and far inside a SQLite INTEGER and a PostgreSQL
BIGINT (and exact as a JSON/JavaScript number). The edge refuses or drops a larger value where it
enters (see the README, "Numbers from chargers")."""

Wh = Annotated[int, Field(ge=0, le=METER_MAX_WH)]


class _Body(BaseModel):
    TYPE: ClassVar[str]
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdTagStatus(StrEnum):
    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"


class CommandStatus(StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"
    FAILED = "failed"


# --- uplink bodies (edge → cloud) -------------------------------------------------------


class SiteHello(_Body):
    """Sent on every connection to the broker: lets the cloud resync what the site lacks."""

    TYPE: ClassVar[str] = "site.hello"
    edge_version: str
    authlist_version: int = Field(ge=0)
    high_water: dict[str, int] = Field(
        default_factory=dict,
        description="per uplink category, the last category_seq this store assigned (see SiteHighWater)")


class ChargerBoot(_Body):
    TYPE: ClassVar[str] = "charger.boot"
    charger_id: str
    vendor: str
    model: str
    serial_number: str | None = None
    firmware_version: str | None = None
    registration_status: Literal["Accepted", "Pending", "Rejected"]


class ChargerStatus(_Body):
    TYPE: ClassVar[str] = "charger.status"
    charger_id: str
    connector_id: int = Field(ge=0)
    status: str
    error_code: str = "NoError"
    info: str | None = None
    observed_at: UtcDatetime
    clock_suspect: bool = False


class SessionStarted(_Body):
    TYPE: ClassVar[str] = "session.started"
    charger_id: str
    connector_id: int = Field(ge=1)
    transaction_id: int = Field(ge=1)
    id_tag: str
    id_tag_status: IdTagStatus
    meter_start_wh: Wh
    started_at: UtcDatetime
    reservation_id: int | None = None
    clock_suspect: bool = False


class SessionMeter(_Body):
    TYPE: ClassVar[str] = "session.meter"
    charger_id: str
    connector_id: int = Field(ge=0)
    transaction_id: int | None = None
    energy_register_wh: Wh | None = None
    power_w: float | None = None
    sampled_at: UtcDatetime
    clock_suspect: bool = False


class SessionStopped(_Body):
    TYPE: ClassVar[str] = "session.stopped"
    charger_id: str
    transaction_id: int
    id_tag: str | None = None
    meter_start_wh: Wh | None = None
    meter_stop_wh: Wh
    energy_wh: Wh = Field(description="billable energy, never negative")
    started_at: UtcDatetime | None = None
    stopped_at: UtcDatetime
    reason: str | None = None
    clock_suspect: bool = False
    reconciled: bool = Field(
        default=False, description="the edge never saw this transaction start (unknown id or -1)"
    )


class SessionAnomaly(_Body):
    """Something a charger said about a session that the edge answered but did not apply.

    ``foreign_stop``: a StopTransaction from another charger than the one that started the
    transaction; it was answered (the charger does not retry it) and never ended the session.
    ``meter_out_of_range``: a meter value beyond :data:`METER_MAX_WH` (or not a number a register
    can hold) was kept out of the energy figures."""

    TYPE: ClassVar[str] = "session.anomaly"
    kind: Literal["foreign_stop", "meter_out_of_range"]
    charger_id: str = Field(description="the charger that sent the message")
    transaction_id: int | None = None
    session_charger_id: str | None = Field(default=None, description="the charger the transaction belongs to")
    meter_wh: Wh | None = Field(default=None, description="foreign_stop: the meterStop it sent")
    value: str | None = Field(default=None, max_length=64, description="meter_out_of_range: the value as sent")
    detail: str = Field(max_length=500)
    observed_at: UtcDatetime


class OpenTransaction(_Body):
    charger_id: str
    connector_id: int = Field(ge=0)
    transaction_id: int = Field(ge=1)


class EndedTransaction(_Body):
    """A transaction the edge has stopped, with its final figures."""

    charger_id: str
    transaction_id: int = Field(ge=1)
    meter_start_wh: Wh
    meter_stop_wh: Wh
    energy_wh: Wh
    started_at: UtcDatetime
    stopped_at: UtcDatetime
    reason: str | None = None


class SessionsOpen(_Body):
    """The edge's open transactions, sent every ``[uplink] sessions_report_every`` seconds and on
    connect, so the cloud closes what the edge no longer has (reconciliation). ``ended`` holds the
    transactions stopped in the last day with their figures (the latest 500); the cloud only
    closes its sessions of this store with ``transaction_id <= last_transaction_id``."""

    TYPE: ClassVar[str] = "session.open"
    open: list[OpenTransaction] = Field(max_length=10_000)
    ended: list[EndedTransaction] = Field(default_factory=list, max_length=500)
    last_transaction_id: int = Field(ge=0, description="the highest transactionId the store has handed out")
    at: UtcDatetime


class ChargerConnection(_Body):
    """A charger's OCPP connection opened or closed (a dead link is closed by the edge's liveness checks)."""

    TYPE: ClassVar[str] = "charger.connection"
    charger_id: str
    online: bool
    at: UtcDatetime
    reason: str | None = None


class ChargerNotification(_Body):
    """A charger message the cloud may want to see: firmware, diagnostics, log and security events, CSRs.

    ``action`` is the OCPP 1.6 action (e.g. ``SecurityEventNotification``), ``payload`` its OCPP payload.
    """

    TYPE: ClassVar[str] = "charger.notification"
    charger_id: str
    action: str
    payload: dict[str, Any]
    received_at: UtcDatetime


class ChargerCall(_Body):
    """A CALL the edge sent to a charger (admin API, cloud command or the edge itself) and its answer.

    ``outcome``: ``result`` (CALLRESULT in ``response.payload``), ``error`` (CALLERROR), ``invalid``
    (an answer that breaks the 1.6 schema) or ``timeout``.
    """

    TYPE: ClassVar[str] = "charger.call"
    charger_id: str
    action: str
    origin: str
    request: dict[str, Any]
    outcome: Literal["result", "error", "invalid", "timeout"]
    response: dict[str, Any] | None = None
    sent_at: UtcDatetime


class BayOccupancy(_Body):
    TYPE: ClassVar[str] = "bay.occupancy"
    bay_id: str
    state: Literal["occupied", "free", "unknown"]
    changed_at: UtcDatetime


BAY_USAGE_V1_WORDS: dict[str, str] = {"idle": "blocked", "overstay": "idle"}
"""What the words of ``bay.usage`` reports with ``words: 1`` (edges before contract 1.1) mean in the
glossary's words; the others (free, charging, unknown) mean the same."""


class BayUsage(_Body):
    """How a bay served by a charger is used; sent when it changes (the cloud bills idle and blocked).

    The glossary's words (``words: 2``, since contract 1.1): ``charging``: its connector has a
    session in progress. ``blocked``: occupied and no session has started since the car arrived.
    ``idle``: occupied after the session on its connector ended (the car stays after charging).
    ``free`` / ``unknown``: as the bay's occupancy. ``since`` is when this state began (the car's
    arrival for ``blocked``, the session's end for ``idle``).

    Reports of older edges carry no ``words`` (1) and the old words: ``idle`` for what the glossary
    calls ``blocked`` and ``overstay`` for ``idle`` (:data:`BAY_USAGE_V1_WORDS`); read
    :attr:`glossary_state`, never ``state``.
    """

    TYPE: ClassVar[str] = "bay.usage"
    bay_id: str
    charger_id: str
    connector_id: int = Field(ge=1)
    state: Literal["free", "charging", "idle", "blocked", "overstay", "unknown"]
    since: UtcDatetime
    transaction_id: int | None = Field(default=None, description="the session in progress, or the one that ended")
    words: Literal[1, 2] = Field(default=1, description="2: the glossary's words (blocked, idle); 1 (absent): the "
                                 "words of edges before contract 1.1 (idle meaning blocked, overstay meaning idle)")

    @model_validator(mode="after")
    def _words_of_its_version(self) -> BayUsage:
        if self.words == 2 and self.state == "overstay":
            raise ValueError("bay.usage with words 2 says idle, not overstay (glossary)")
        if self.words == 1 and self.state == "blocked":
            raise ValueError("bay.usage without words 2 cannot say blocked (that was idle)")
        return self

    @property
    def glossary_state(self) -> Literal["free", "charging", "idle", "blocked", "unknown"]:
        """The state in the glossary's words, whichever words the edge used."""
        state = BAY_USAGE_V1_WORDS.get(self.state, self.state) if self.words == 1 else self.state
        return state  # type: ignore[return-value]


class OutboxDropped(_Body):
    """The site's offline outbox reached its cap and events were dropped or refused (``at_cap``).

    Sent once per drop; the seqs of the dropped envelopes never arrive. Session and charger
    records are never dropped, only meter samples and bay changes.
    """

    TYPE: ClassVar[str] = "site.outbox_dropped"
    policy: Literal["drop_oldest_telemetry", "refuse_new"]
    dropped: int = Field(ge=1)
    by_type: dict[str, int]
    first_seq: int | None = Field(default=None, description="lowest dropped seq (drop_oldest_telemetry)")
    last_seq: int | None = None
    backlog: int = Field(ge=0, description="envelopes still waiting after the drop")
    backlog_bytes: int = Field(ge=0)
    at: UtcDatetime


class SiteHighWater(_Body):
    """The store's high-water marks, sent every minute while connected (and in every hello).

    ``high_water`` maps an uplink category to the last ``category_seq`` the store assigned in it, so
    a cloud service also learns of envelopes it never received at the end of a category (a lost
    tail). The marks are of the store named by the envelope's ``store_id``.
    """

    TYPE: ClassVar[str] = "site.high_water"
    high_water: dict[str, int]
    at: UtcDatetime


class SiteResent(_Body):
    """The edge's answer to a ``site.resend``: what of the range it published again, and what is gone.

    ``gone`` lists ``[first, last]`` ranges the store dropped on purpose (the outbox cap, or the
    retention of acknowledged envelopes): they never arrive, and are not asked for again.
    ``unknown_store``: the request named another store instance (a replaced database); nothing of
    it can be sent. Envelopes still waiting in the outbox are neither resent nor gone: they come.
    """

    TYPE: ClassVar[str] = "site.resent"
    command_id: str
    store_id: str | None = None
    category: str
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)
    resent: int = Field(ge=0)
    gone: list[tuple[int, int]] = Field(default_factory=list)
    unknown_store: bool = False


class InventoryBay(_Body):
    bay_id: str = Field(min_length=1, max_length=64)
    type: Literal["ev", "regular", "accessible"]
    charger_id: str | None = None
    connector_id: int | None = Field(default=None, ge=1)


class InventoryCharger(_Body):
    charger_id: str = Field(min_length=1, max_length=64)
    connectors: int = Field(ge=0, description="highest connector id the charger reported or a bay names (0: none)")
    max_power_w: int | None = Field(default=None, ge=0)


class SiteInventory(_Body):
    """The site's hardware as configured at the site; the cloud mirrors it (replaces, not merges)."""

    TYPE: ClassVar[str] = "site.inventory"
    bays: list[InventoryBay]
    chargers: list[InventoryCharger]
    power_limit_a: float | None = Field(default=None, ge=0,
                                        description="the site limit load management shares, amps per phase")
    phases: int | None = Field(default=None, ge=1, le=3)
    voltage: float | None = Field(default=None, gt=0)


# --- downlink bodies (cloud → edge) -----------------------------------------------------


class AuthListEntry(_Body):
    id_tag: str = Field(min_length=1, max_length=20)
    status: IdTagStatus
    expiry_date: UtcDatetime | None = None
    parent_id_tag: str | None = Field(default=None, max_length=20)
    vehicle_id: str | None = None


class AuthListUpdate(_Body):
    """Idempotent by version: the edge applies it only when ``version`` is newer than its own.

    ``full`` replaces the whole list; otherwise the entries are changes since ``since_version``.
    """

    TYPE: ClassVar[str] = "authlist.update"
    version: int = Field(ge=1)
    since_version: int = Field(default=0, ge=0)
    full: bool = False
    entries: list[AuthListEntry]


class SetPowerLimit(_Body):
    """Change the site limit that load management shares (amps per phase or watts, one of them).

    Kept by the edge across restarts until changed again (or until the site file's own limit is
    edited); answered ``rejected`` when the site has no ``[power]`` table. 0, or anything below the
    minimum current, pauses every session. ``data.limit_a`` is the limit applied, amps per phase.
    """

    TYPE: ClassVar[str] = "site.set_power_limit"
    limit_a: float | None = Field(default=None, ge=0, le=10_000)
    limit_w: float | None = Field(default=None, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _one_limit(self) -> SetPowerLimit:
        if (self.limit_a is None) == (self.limit_w is None):
            raise ValueError("give exactly one of limit_a (amps per phase) or limit_w (watts)")
        return self


MAX_RESEND_RANGE = 1000
"""The most envelopes one ``site.resend`` may ask for."""


class Resend(_Body):
    """Publish again the envelopes ``first_seq``..``last_seq`` of ``category`` written by store ``store_id``.

    The edge re-publishes those it keeps (acknowledged envelopes are kept for a retention window) with
    their own ids, and answers with a :class:`SiteResent`. At most :data:`MAX_RESEND_RANGE` per command.
    """

    TYPE: ClassVar[str] = "site.resend"
    store_id: str = Field(min_length=1, max_length=64)
    category: Literal["site", "charger", "session", "bay", "result"]
    first_seq: int = Field(ge=1)
    last_seq: int = Field(ge=1)

    @model_validator(mode="after")
    def _range(self) -> Resend:
        if self.last_seq < self.first_seq:
            raise ValueError("last_seq must not be below first_seq")
        if self.last_seq - self.first_seq + 1 > MAX_RESEND_RANGE:
            raise ValueError(f"at most {MAX_RESEND_RANGE} envelopes per resend")
        return self


# Charger commands: the edge sends the OCPP 1.6 CALL named in each docstring to the charger and
# answers with a command.result whose ``data.response`` is the charger's answer (OCPP payload).


class _ChargerCommand(_Body):
    charger_id: str = Field(min_length=1, max_length=64)


class RemoteStart(_ChargerCommand):
    """RemoteStartTransaction."""

    TYPE: ClassVar[str] = "charger.remote_start"
    id_tag: str = Field(min_length=1, max_length=20)
    connector_id: int | None = Field(default=None, ge=1)
    charging_profile: dict[str, Any] | None = Field(default=None, description="OCPP ChargingProfile (camelCase)")


class RemoteStop(_ChargerCommand):
    """RemoteStopTransaction."""

    TYPE: ClassVar[str] = "charger.remote_stop"
    transaction_id: int


class Reserve(_ChargerCommand):
    """ReserveNow. Connector 0 reserves any connector of the charger."""

    TYPE: ClassVar[str] = "charger.reserve"
    reservation_id: int = Field(ge=1)
    connector_id: int = Field(ge=0)
    id_tag: str = Field(min_length=1, max_length=20)
    expiry_date: UtcDatetime
    parent_id_tag: str | None = Field(default=None, max_length=20)


class CancelReservation(_ChargerCommand):
    """CancelReservation."""

    TYPE: ClassVar[str] = "charger.cancel_reservation"
    reservation_id: int


class ChangeAvailability(_ChargerCommand):
    """ChangeAvailability. Connector 0 is the whole charger."""

    TYPE: ClassVar[str] = "charger.change_availability"
    connector_id: int = Field(ge=0)
    type: Literal["Operative", "Inoperative"]


class Reset(_ChargerCommand):
    """Reset."""

    TYPE: ClassVar[str] = "charger.reset"
    type: Literal["Hard", "Soft"]


class UnlockConnector(_ChargerCommand):
    """UnlockConnector."""

    TYPE: ClassVar[str] = "charger.unlock"
    connector_id: int = Field(ge=1)


class SetChargingProfile(_ChargerCommand):
    """SetChargingProfile."""

    TYPE: ClassVar[str] = "charger.set_charging_profile"
    connector_id: int = Field(ge=0)
    charging_profile: dict[str, Any] = Field(description="OCPP csChargingProfiles (camelCase)")


class ClearChargingProfile(_ChargerCommand):
    """ClearChargingProfile. No criteria clears every profile of the charger."""

    TYPE: ClassVar[str] = "charger.clear_charging_profile"
    profile_id: int | None = None
    connector_id: int | None = Field(default=None, ge=0)
    purpose: Literal["ChargePointMaxProfile", "TxDefaultProfile", "TxProfile"] | None = None
    stack_level: int | None = Field(default=None, ge=0)


class AcceptCharger(_ChargerCommand):
    """Accept a charger registered as Pending; the edge triggers its BootNotification (TriggerMessage)."""

    TYPE: ClassVar[str] = "charger.accept"


UPLINK_BODIES: dict[str, type[_Body]] = {
    model.TYPE: model
    for model in (SiteHello, ChargerBoot, ChargerStatus, ChargerConnection, ChargerNotification, ChargerCall,
                  SessionStarted,
                  SessionMeter, SessionStopped, BayOccupancy, BayUsage, SiteInventory, OutboxDropped, SiteHighWater,
                  SiteResent)
}
UPLINK_BODIES.update({SessionAnomaly.TYPE: SessionAnomaly, SessionsOpen.TYPE: SessionsOpen})
CHARGER_COMMANDS: tuple[type[_ChargerCommand], ...] = (
    RemoteStart, RemoteStop, Reserve, CancelReservation, ChangeAvailability, Reset, UnlockConnector,
    SetChargingProfile, ClearChargingProfile, AcceptCharger,
)
COMMAND_BODIES: dict[str, type[_Body]] = {AuthListUpdate.TYPE: AuthListUpdate, SetPowerLimit.TYPE: SetPowerLimit,
                                          Resend.TYPE: Resend}
COMMAND_BODIES.update({model.TYPE: model for model in CHARGER_COMMANDS})
