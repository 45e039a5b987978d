"""The site model: what the edge does with each charger message and each cloud command.

OCPP handlers (:mod:`edge.ocpp_server`) and the uplink (:mod:`edge.uplink`) stay thin and
call one method here. Each method is one store transaction: the state change and the
uplink envelopes it causes commit together, or not at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import structlog

from edge.domain import (
    AuthDecision,
    AuthEntry,
    ChargerTime,
    authorize,
    billable_energy_wh,
    charger_time,
    meter_wh,
    read_sampled_values,
    stop_time,
    transaction_begin_wh,
)
from edge.metrics import COMMANDS, RESEND_GONE, RESENT
from edge.security import basic_credentials, hash_key, valid_key, verify_key
from edge.store import Store, StoreTransaction, TransactionRecord
from mqtt.envelope import Command, CommandResult, parse_body
from mqtt.payloads import (
    COMMAND_BODIES,
    METER_MAX_WH,
    AcceptCharger,
    AuthListUpdate,
    CancelReservation,
    ChangeAvailability,
    ChargerBoot,
    ChargerCall,
    ChargerConnection,
    ChargerNotification,
    ChargerStatus,
    ClearChargingProfile,
    CommandStatus,
    EndedTransaction,
    IdTagStatus,
    OpenTransaction,
    RemoteStart,
    RemoteStop,
    Resend,
    Reserve,
    Reset,
    SessionAnomaly,
    SessionMeter,
    SessionsOpen,
    SessionStarted,
    SessionStopped,
    SetChargingProfile,
    SetPowerLimit,
    SiteHello,
    SiteHighWater,
    SiteResent,
    UnlockConnector,
)

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BootInfo:
    vendor: str
    model: str
    serial: str | None = None
    firmware: str | None = None


CHARGER_ACTIONS = frozenset({
    # Core
    "ChangeAvailability", "ChangeConfiguration", "ClearCache", "DataTransfer", "GetConfiguration",
    "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "UnlockConnector",
    # Firmware Management, Local Auth List Management, Reservation, Smart Charging, Remote Trigger
    "GetDiagnostics", "UpdateFirmware", "GetLocalListVersion", "SendLocalList", "ReserveNow", "CancelReservation",
    "SetChargingProfile", "ClearChargingProfile", "GetCompositeSchedule", "TriggerMessage",
    # security extension
    "CertificateSigned", "InstallCertificate", "DeleteCertificate", "GetInstalledCertificateIds", "GetLog",
    "SignedUpdateFirmware", "ExtendedTriggerMessage",
})
"""Central system → charger CALLs of OCPP 1.6 (OCPP-NOTES "Messages by feature profile")."""

NOT_WHILE_PENDING = frozenset({"RemoteStartTransaction", "RemoteStopTransaction"})
"""OCPP 1.6 §4.2.1: no remote start/stop to a charger whose registration is Pending."""

SECRET_KEYS = frozenset({"authorizationkey"})
"""Configuration keys whose value is a credential (security whitepaper: AuthorizationKey is write-only)."""
KEY_ADOPTED = frozenset({"Accepted", "RebootRequired"})
"""ChangeConfiguration answers after which the charger uses the new AuthorizationKey (now or after a reboot)."""
MASK = "********"


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def mask_secrets(action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as it may be stored, listed, logged and relayed: a credential's value masked (in the
    request of a ChangeConfiguration, and in a GetConfiguration answer of a charger that lists its key)."""
    if action == "ChangeConfiguration" and is_secret_key(payload.get("key")) and "value" in payload:
        return {**payload, "value": MASK}
    keys = payload.get("configurationKey")
    if action == "GetConfiguration" and isinstance(keys, list):
        return {**payload, "configurationKey": [
            {**item, "value": MASK} if isinstance(item, dict) and is_secret_key(item.get("key")) and "value" in item
            else item for item in keys]}
    return dict(payload)


class Admission(enum.Enum):
    OK = "ok"
    UNKNOWN = "unknown"  # HTTP 404
    UNAUTHORIZED = "unauthorized"  # HTTP 401


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """A charger's answer to a CALL: a CALLRESULT (``result``), a CALLERROR (``error``), or a
    CALLRESULT that breaks the 1.6 schema (``invalid``)."""

    kind: Literal["result", "error", "invalid"]
    payload: dict[str, Any] = field(default_factory=dict)
    error_code: str | None = None
    error_description: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "result":
            return {"kind": "result", "payload": self.payload}
        return {"kind": self.kind, "error_code": self.error_code, "error_description": self.error_description,
                "details": self.payload}


class ChargerCallError(Exception):
    """A CALL to a charger could not be made or was not answered."""


class ChargerNotConnected(ChargerCallError):
    def __init__(self, charger_id: str) -> None:
        super().__init__(f"charger {charger_id!r} is not connected")


class ChargerCallTimeout(ChargerCallError):
    pass


class ChargerCallRefused(ChargerCallError):
    """The edge refuses to send this CALL (unknown action, invalid payload, charger not accepted)."""


class ChargerNotAccepted(ChargerCallRefused):
    """The charger's registration is Pending; this CALL waits until an operator accepts it."""


class ChargerLink(Protocol):
    """The port to connected chargers (implemented by :class:`edge.ocpp_server.OcppServer`)."""

    async def call(self, charger_id: str, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer: ...

    def is_connected(self, charger_id: str) -> bool: ...


class _NoChargers:
    async def call(self, charger_id: str, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer:
        raise ChargerNotConnected(charger_id)

    def is_connected(self, charger_id: str) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class BootAnswer:
    status: Literal["Accepted", "Pending", "Rejected"]
    interval: int
    current_time: datetime


@dataclass(frozen=True, slots=True)
class StartAnswer:
    transaction_id: int
    auth: AuthDecision
    duplicate: bool


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    status: CommandStatus
    detail: str | None = None
    data: Mapping[str, Any] | None = None


def ocpp_request(body: Any) -> tuple[str, dict[str, Any]]:
    """The OCPP 1.6 CALL (action, camelCase payload) that carries out a cloud charger command."""
    if isinstance(body, RemoteStart):
        payload: dict[str, Any] = {"idTag": body.id_tag}
        if body.connector_id is not None:
            payload["connectorId"] = body.connector_id
        if body.charging_profile is not None:
            payload["chargingProfile"] = body.charging_profile
        return "RemoteStartTransaction", payload
    if isinstance(body, RemoteStop):
        return "RemoteStopTransaction", {"transactionId": body.transaction_id}
    if isinstance(body, Reserve):
        payload = {"connectorId": body.connector_id, "expiryDate": _ocpp_time(body.expiry_date),
                   "idTag": body.id_tag, "reservationId": body.reservation_id}
        if body.parent_id_tag:
            payload["parentIdTag"] = body.parent_id_tag
        return "ReserveNow", payload
    if isinstance(body, CancelReservation):
        return "CancelReservation", {"reservationId": body.reservation_id}
    if isinstance(body, ChangeAvailability):
        return "ChangeAvailability", {"connectorId": body.connector_id, "type": body.type}
    if isinstance(body, Reset):
        return "Reset", {"type": body.type}
    if isinstance(body, UnlockConnector):
        return "UnlockConnector", {"connectorId": body.connector_id}
    if isinstance(body, SetChargingProfile):
        return "SetChargingProfile", {"connectorId": body.connector_id, "csChargingProfiles": body.charging_profile}
    if isinstance(body, ClearChargingProfile):
        criteria = {"id": body.profile_id, "connectorId": body.connector_id,
                    "chargingProfilePurpose": body.purpose, "stackLevel": body.stack_level}
        return "ClearChargingProfile", {k: v for k, v in criteria.items() if v is not None}
    raise TypeError(f"not a charger command: {type(body).__name__}")


def _ocpp_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


CHARGER_STATES = frozenset({"Available", "Unavailable", "Faulted"})
"""The only statuses connector 0 (the whole charger) can have."""

FREE_STATES = frozenset({"Available", "Preparing"})
"""Connector statuses that no transaction has (OCPP 1.6 §4.9): one reported after a start ends it there."""

DEFAULT_STOP_REASON = "Local"
"""OCPP 1.6 §7.45: a StopTransaction without ``reason`` means Local."""


class SiteObserver:
    """Told of what happened at the site, after it is committed. Methods must be quick and must not
    raise (they run on the charger's path): record, wake a task, return. Override what you need."""

    def session_started(self, charger_id: str, connector_id: int, transaction_id: int, at: datetime) -> None:
        """A new session (not a repeated StartTransaction)."""

    def session_stopped(self, charger_id: str, connector_id: int, transaction_id: int, at: datetime) -> None:
        """A known session stopped (first stop only)."""

    def meter_sample(self, charger_id: str, connector_id: int, transaction_id: int | None,
                     current_a: float | None, power_w: float | None) -> None:
        """The latest draw a MeterValues reported (Current.Import, Power.Active.Import)."""

    def charger_seen(self, charger_id: str, connector_id: int) -> None:
        """A BootNotification (connector 0) or a StatusNotification of a connector."""


class PowerControl(Protocol):
    """Load management, as the site's commands and the admin API change it (edge.loadmgmt)."""

    @property
    def configured_limit_a(self) -> float: ...

    def amps(self, *, limit_a: float | None, limit_w: float | None) -> float: ...

    def set_limit(self, amps: float) -> None: ...


SESSIONS_REPORT_EVERY = 300.0
"""Default seconds between two ``session.open`` reports (``EVPARK_EDGE_SESSIONS_REPORT_EVERY``)."""
WRITTEN_OFF_GRACE = timedelta(days=1)
"""A session the charger forgot stays in the ``session.open`` report this long for its late StopTransaction
(ended with the charger's own figures); after that the cloud closes it with the energy it knows."""
ENDED_WITHIN = timedelta(days=1)
"""A ``session.open`` report carries the transactions stopped this recently, with their figures."""
MAX_OPEN_REPORTED = 10_000
MAX_ENDED_REPORTED = 500

POWER_LIMIT_KEY = "power_limit"
"""meta key of a site limit changed at run time (admin API or cloud), kept across restarts."""


class Site:
    """One parking site's chargers, sessions and local authorization list."""

    def __init__(self, store: Store, *, site_id: str, heartbeat_interval: int, accept_unknown_chargers: bool,
                 unknown_chargers_pending: bool = False, offline_accept_unknown_id_tags: bool = False,
                 call_timeout: float = 30.0, min_security_profile: int = 0,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.site_id = site_id
        self.heartbeat_interval = heartbeat_interval
        self.accept_unknown_chargers = accept_unknown_chargers
        self.unknown_chargers_pending = unknown_chargers_pending
        self.offline_accept_unknown_id_tags = offline_accept_unknown_id_tags
        self.call_timeout = call_timeout
        self.min_security_profile = min_security_profile
        self.chargers: ChargerLink = _NoChargers()
        """Set by the composition root once the OCPP server exists."""
        self.cloud_online: Callable[[], bool] = lambda: False
        """Whether the uplink is connected; set by the composition root."""
        self.observers: list[SiteObserver] = []
        self.power: PowerControl | None = None
        """Load management, when the site file has a [power] table; set by the composition root."""
        self._clock = clock

    def _tell(self, event: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:  # an observer's bug must not fail a charger's CALL
                log.exception("site.observer_failed", observer=type(observer).__name__, event=event)

    # --- chargers -----------------------------------------------------------------------

    async def may_connect(self, charger_id: str) -> bool:
        """Whether a charger id may open an OCPP connection at all (else HTTP 404 at the handshake)."""
        if self.accept_unknown_chargers:
            return True
        return await self.store.get_charger(charger_id) is not None

    async def admit(self, charger_id: str, authorization: str | None, *, tls: bool,
                    certificate_cn: str | None = None) -> Admission:
        """The handshake decision (OCPP-NOTES "Security profiles"): unknown → 404; a charger below
        ``min_security_profile`` → 401; a charger with profile 1 or 2 must send HTTP Basic
        ``<id>:<AuthorizationKey>``, profile 2 over TLS; a profile 3 charger must present, over TLS, a client
        certificate of the site's charger CA (checked by the TLS handshake) whose subject CN is its id.

        ``certificate_cn`` is the subject common name of the verified client certificate, if any. A new
        AuthorizationKey the charger accepted replaces the old one at its first use.
        """
        charger = await self.store.get_charger(charger_id)
        if charger is None:
            if not self.accept_unknown_chargers:
                return Admission.UNKNOWN
            return Admission.OK if self.min_security_profile == 0 else Admission.UNAUTHORIZED
        if charger.security_profile < self.min_security_profile:
            return Admission.UNAUTHORIZED  # e.g. a profile 0 charger anyone could impersonate
        if charger.security_profile == 0:
            return Admission.OK
        if charger.security_profile >= 3:
            return Admission.OK if tls and certificate_cn == charger_id else Admission.UNAUTHORIZED
        credentials = basic_credentials(authorization)
        if credentials is None or credentials[0] != charger_id or charger.auth_key_hash is None:
            return Admission.UNAUTHORIZED
        if charger.security_profile >= 2 and not tls:
            return Admission.UNAUTHORIZED  # never downgraded to plain ws://
        if await asyncio.to_thread(verify_key, credentials[1], charger.auth_key_hash):
            return Admission.OK
        if charger.next_auth_key_hash is not None and \
                await asyncio.to_thread(verify_key, credentials[1], charger.next_auth_key_hash):
            async with self.store.transaction() as tx:
                await tx.promote_next_auth_key(charger_id, charger.next_auth_key_hash)
            log.info("charger.auth_key_adopted", charger_id=charger_id)
            return Admission.OK
        return Admission.UNAUTHORIZED

    async def set_security_profile(self, charger_id: str, security_profile: int) -> None:
        """Raise a charger's Security Profile (registers the id if new). Profile 3 needs no key (its client
        certificate names it); profiles 1 and 2 need a key stored first (:meth:`set_auth_key`). Never lowered."""
        if security_profile not in (1, 2, 3):
            raise ValueError("security_profile must be 1, 2 or 3")
        async with self.store.transaction() as tx:
            current = await tx.get_charger(charger_id)
            if current is not None and current.security_profile > security_profile:
                raise ValueError(f"charger {charger_id!r} uses profile {current.security_profile}; "
                                 "a profile is never downgraded")
            key = current.auth_key_hash if current is not None else None
            if security_profile < 3 and key is None:
                raise ValueError(f"charger {charger_id!r} has no AuthorizationKey: set one with its profile")
            await tx.set_charger_security(charger_id, security_profile=security_profile, auth_key_hash=key,
                                          now=self._clock())
        log.info("charger.security_profile_set", charger_id=charger_id, security_profile=security_profile)

    async def set_auth_key(self, charger_id: str, key: str, security_profile: int) -> None:
        """Store a charger's AuthorizationKey for Security Profile 1 or 2 (registers the id if new)."""
        if security_profile not in (1, 2):
            raise ValueError("security_profile must be 1 (Basic auth) or 2 (TLS + Basic auth)")
        if not valid_key(key):
            raise ValueError("the AuthorizationKey must be 16 to 40 printable characters")
        hashed = await asyncio.to_thread(hash_key, key)
        async with self.store.transaction() as tx:
            current = await tx.get_charger(charger_id)
            if current is not None and current.security_profile > security_profile:
                raise ValueError(f"charger {charger_id!r} uses profile {current.security_profile}; "
                                 "a profile is never downgraded")
            await tx.set_charger_security(charger_id, security_profile=security_profile, auth_key_hash=hashed,
                                          now=self._clock())
        log.info("charger.auth_key_set", charger_id=charger_id, security_profile=security_profile)

    async def accept_charger(self, charger_id: str) -> bool:
        """Accept a Pending charger; when it is connected, trigger its BootNotification so it learns.

        Returns whether the trigger was sent. Raises LookupError for an unknown charger.
        """
        async with self.store.transaction() as tx:
            if await tx.get_charger(charger_id) is None:
                raise LookupError(f"unknown charger {charger_id!r}")
            await tx.set_registration_status(charger_id, "Accepted")
        log.info("charger.accepted", charger_id=charger_id)
        if not self.chargers.is_connected(charger_id):
            return False
        try:
            await self.call_charger(charger_id, "TriggerMessage", {"requestedMessage": "BootNotification"},
                                    origin="accept")
        except ChargerCallError:
            return False
        return True

    async def charger_connection(self, charger_id: str, *, online: bool, reason: str | None = None) -> None:
        now = self._clock()
        async with self.store.writes() as tx:  # group commit
            await tx.emit(ChargerConnection(charger_id=charger_id, online=online, at=now, reason=reason))
        log.info("charger.online" if online else "charger.offline", charger_id=charger_id, reason=reason)

    async def charger_notification(self, charger_id: str, action: str, payload: Mapping[str, Any]) -> None:
        """Firmware/diagnostics/log status, security events, CSRs, DataTransfer: kept and relayed."""
        now = self._clock()
        async with self.store.transaction() as tx:
            await tx.touch_charger(charger_id, now)
            await tx.record_charger_event(charger_id, action, payload, now)
            if action == "FirmwareStatusNotification" or action == "SignedFirmwareStatusNotification":
                await tx.set_charger_field(charger_id, "firmware_status", str(payload.get("status")))
            elif action == "DiagnosticsStatusNotification":
                await tx.set_charger_field(charger_id, "diagnostics_status", str(payload.get("status")))
            await tx.emit(ChargerNotification(charger_id=charger_id, action=action, payload=dict(payload),
                                              received_at=now))

    async def call_charger(self, charger_id: str, action: str, payload: dict[str, Any], *, origin: str,
                           answer_within: float | None = None) -> CallAnswer:
        """Send a central system → charger CALL, record it and what the charger accepted.

        Never call this from inside the handler of that charger's own CALL (OCPP-NOTES "Framing").
        Raises ChargerCallRefused, ChargerNotConnected or ChargerCallTimeout.
        """
        if action not in CHARGER_ACTIONS:
            raise ChargerCallRefused(f"{action!r} is not a central system → charger action of OCPP 1.6")
        if action in NOT_WHILE_PENDING:
            charger = await self.store.get_charger(charger_id)
            if charger is not None and charger.pending:
                raise ChargerNotAccepted(f"charger {charger_id!r} is Pending: no {action} until it is accepted")
        new_key_hash: str | None = None
        recorded = payload
        if action == "ChangeConfiguration" and is_secret_key(payload.get("key")):
            # The key never goes to the calls log, the uplink or a log line in clear (see mask_secrets).
            value = payload.get("value")
            if not isinstance(value, str) or not valid_key(value):
                raise ChargerCallRefused("an AuthorizationKey is 16 to 40 printable characters")
            new_key_hash = await asyncio.to_thread(hash_key, value)
            recorded = mask_secrets(action, payload)
        answer: CallAnswer | None = None
        try:
            answer = await self.chargers.call(charger_id, action, payload, answer_within or self.call_timeout)
        except TimeoutError:
            await self._record_call(charger_id, action, recorded, "timeout", None, origin)
            raise ChargerCallTimeout(f"charger {charger_id!r} did not answer {action} within "
                                     f"{answer_within or self.call_timeout} s") from None
        if action == "GetConfiguration" and answer.kind == "result":
            answer = dataclasses.replace(answer, payload=mask_secrets(action, answer.payload))
        await self._record_call(charger_id, action, recorded, answer.kind, answer, origin, new_key_hash=new_key_hash)
        return answer

    async def _record_call(self, charger_id: str, action: str, request: dict[str, Any],
                           outcome: Literal["result", "error", "invalid", "timeout"],
                           answer: CallAnswer | None, origin: str, *, new_key_hash: str | None = None) -> None:
        now = self._clock()
        async with self.store.transaction() as tx:
            response = answer.as_dict() if answer else None
            await tx.record_charger_call(charger_id, action, request, outcome=outcome, response=response,
                                         origin=origin, now=now)
            await tx.emit(ChargerCall(charger_id=charger_id, action=action, origin=origin, request=request,
                                      outcome=outcome, response=response, sent_at=now))
            if answer is not None and answer.kind == "result":
                await self._apply_answer(tx, charger_id, action, request, answer.payload, now)
                if new_key_hash is not None and answer.payload.get("status") in KEY_ADOPTED:
                    # Adopted now; the old key stays valid until the charger's first connection with this one.
                    await tx.set_next_auth_key(charger_id, new_key_hash)
                    log.info("charger.auth_key_accepted", charger_id=charger_id,
                             status=answer.payload.get("status"))

    async def _apply_answer(self, tx: StoreTransaction, charger_id: str, action: str, request: Mapping[str, Any],
                            response: Mapping[str, Any], now: datetime) -> None:
        """What a charger's answer changes in the site's state."""
        accepted = response.get("status") == "Accepted"
        if action == "ReserveNow" and accepted:
            await tx.upsert_reservation(reservation_id=int(request["reservationId"]), charger_id=charger_id,
                                        connector_id=int(request["connectorId"]), id_tag=str(request["idTag"]),
                                        expiry_date=str(request["expiryDate"]), now=now)
        elif action == "CancelReservation" and accepted:
            await tx.end_reservation(int(request["reservationId"]), "cancelled", now)
        elif action == "SetChargingProfile" and accepted:
            await tx.save_charging_profile(charger_id, int(request["connectorId"]), request["csChargingProfiles"],
                                           now)
        elif action == "ClearChargingProfile" and accepted:
            await tx.clear_charging_profiles(charger_id, profile_id=request.get("id"),
                                             connector_id=request.get("connectorId"),
                                             purpose=request.get("chargingProfilePurpose"),
                                             stack_level=request.get("stackLevel"))
        elif action == "SendLocalList" and accepted:
            await tx.set_charger_field(charger_id, "local_list_version", int(request["listVersion"]))
        elif action == "GetLocalListVersion":
            await tx.set_charger_field(charger_id, "local_list_version", int(response["listVersion"]))

    # --- operator's idTags --------------------------------------------------------------

    async def put_id_tag(self, id_tag: str, *, status: IdTagStatus, expiry_date: datetime | None = None,
                         parent_id_tag: str | None = None) -> AuthEntry:
        entry = AuthEntry(id_tag=id_tag, status=status, expiry_date=expiry_date, parent_id_tag=parent_id_tag)
        async with self.store.transaction() as tx:
            await tx.put_auth_entry(entry)
        log.info("id_tag.set", id_tag=id_tag, status=str(status))
        return entry

    async def block_id_tag(self, id_tag: str) -> AuthEntry:
        return await self._change_id_tag(id_tag, status=IdTagStatus.BLOCKED)

    async def expire_id_tag(self, id_tag: str) -> AuthEntry:
        return await self._change_id_tag(id_tag, expiry_date=self._clock())

    async def _change_id_tag(self, id_tag: str, **changes: Any) -> AuthEntry:
        async with self.store.transaction() as tx:
            entry = await tx.get_auth_entry(id_tag)
            if entry is None:
                raise LookupError(f"unknown idTag {id_tag!r}")
            values = {"id_tag": entry.id_tag, "status": entry.status, "expiry_date": entry.expiry_date,
                      "parent_id_tag": entry.parent_id_tag, "vehicle_id": entry.vehicle_id, **changes}
            changed = AuthEntry(**values)
            await tx.put_auth_entry(changed)
        return changed

    async def boot_accepted(self, charger_id: str) -> bool:
        """Whether the charger's boot was accepted, in this or an earlier connection."""
        charger = await self.store.get_charger(charger_id)
        return charger is not None and charger.accepted

    async def boot(self, charger_id: str, info: BootInfo) -> BootAnswer:
        now = self._clock()
        async with self.store.transaction() as tx:
            charger = await tx.get_charger(charger_id)
            known = charger is not None
            if not known and not self.accept_unknown_chargers:
                # Provisioning changed while it was connected; it stays silent for `interval`.
                log.warning("charger.boot_rejected", charger_id=charger_id)
                return BootAnswer("Rejected", self.heartbeat_interval, now)
            status: Literal["Accepted", "Pending"] = "Accepted"
            if (charger is not None and charger.pending) or (not known and self.unknown_chargers_pending):
                # OCPP 1.6 §4.2: Pending until an operator accepts it (admin API or charger.accept).
                status = "Pending"
            await tx.record_boot(charger_id, vendor=info.vendor, model=info.model, serial=info.serial,
                                 firmware=info.firmware, registration_status=status, now=now)
            # A boot is a reboot: the charger's transactions of before have ended there (their
            # StopTransaction may still come from its queue), and so have their TxProfiles.
            forgotten = await self._write_off(tx, charger_id, reason="reboot", now=now)
            await tx.end_tx_profiles(charger_id)
            await tx.emit(ChargerBoot(charger_id=charger_id, vendor=info.vendor, model=info.model,
                                      serial_number=info.serial, firmware_version=info.firmware,
                                      registration_status=status))
        log.info("charger.booted", charger_id=charger_id, vendor=info.vendor, model=info.model,
                 registered=not known, status=status)
        self._tell_written_off(forgotten, now)
        self._tell("charger_seen", charger_id, 0)
        return BootAnswer(status, self.heartbeat_interval, now)

    async def heartbeat(self, charger_id: str) -> datetime:
        now = self._clock()
        async with self.store.writes() as tx:  # group commit
            await tx.touch_charger(charger_id, now)
        return now

    async def connector_status(self, charger_id: str, connector_id: int, *, status: str, error_code: str,
                               info: str | None, timestamp: str | None) -> None:
        now = self._clock()
        observed = charger_time(timestamp, now)
        async with self.store.writes() as tx:  # group commit
            await tx.touch_charger(charger_id, now)
            if connector_id < 0:
                log.warning("charger.bad_connector_id", charger_id=charger_id, connector_id=connector_id)
                return
            if connector_id == 0 and status not in CHARGER_STATES:
                # OCPP 1.6 §4.9: connector 0 is the whole charger: Available, Unavailable or Faulted
                # only. Answered (the charger must not retry) but not taken as the charger's state.
                log.warning("charger.connector_status_on_connector_0", charger_id=charger_id, status=status)
                return
            await tx.record_connector_status(charger_id, connector_id, status=status, error_code=error_code,
                                             info=info, at=observed.at)
            await tx.emit(ChargerStatus(charger_id=charger_id, connector_id=connector_id, status=status,
                                        error_code=error_code, info=info, observed_at=observed.at,
                                        clock_suspect=observed.suspect))
        if connector_id >= 1 and status in FREE_STATES:
            # A connector with a transaction is Charging, Suspended… or Finishing (§4.9): one reported
            # Available or Preparing after a transaction started has ended it at the charger.
            async with self.store.transaction() as tx:
                forgotten = await self._write_off(tx, charger_id, reason=f"connector_{status.lower()}", now=now,
                                                  connector_id=connector_id, started_before=observed.at)
                if forgotten:
                    await tx.end_tx_profiles(charger_id, connector_id)
            self._tell_written_off(forgotten, now)
        if connector_id >= 0:
            self._tell("charger_seen", charger_id, connector_id)

    async def _write_off(self, tx: StoreTransaction, charger_id: str, *, reason: str, now: datetime,
                         **which: Any) -> list[TransactionRecord]:
        """Write off the running transactions the charger forgot (README "Sessions a charger forgot")."""
        forgotten = await tx.write_off(charger_id, reason=reason, now=now, **which)
        for record in forgotten:
            log.warning("session.written_off", charger_id=charger_id, connector_id=record.connector_id,
                        transaction_id=record.id, reason=reason)
        return forgotten

    def _tell_written_off(self, forgotten: Sequence[TransactionRecord], now: datetime) -> None:
        for record in forgotten:
            if record.connector_id >= 1:
                self._tell("session_stopped", record.charger_id, record.connector_id, record.id, now)

    # --- authorization and sessions -----------------------------------------------------

    async def _decide(self, tx: StoreTransaction, id_tag: str, now: datetime,
                      charging_at: tuple[str, int] | None = None) -> AuthDecision:
        """The idTag's status: local list, its group, the offline policy, and for a start (``charging_at``,
        the charger and connector asking) the idTag's other running transactions (ConcurrentTx).

        OCPP 1.6 §7.2: ConcurrentTx "is only relevant for a StartTransaction.req", so an Authorize
        (``charging_at`` None) never gets it. A transaction of the same idTag on the asking connector is the
        one being replaced or retried, not a concurrent one.
        """
        entry = await tx.get_auth_entry(id_tag)
        parent = await tx.get_auth_entry(entry.parent_id_tag) if entry and entry.parent_id_tag else None
        others = [] if charging_at is None else [t for t in await tx.active_transactions_of(id_tag, live=True)
                                                 if (t.charger_id, t.connector_id) != charging_at]
        accept_unknown = self.offline_accept_unknown_id_tags and not self.cloud_online()
        return authorize(entry, now, parent=parent, in_other_transaction=bool(others), accept_unknown=accept_unknown)

    async def authorize(self, id_tag: str) -> AuthDecision:
        """Authorize.req: the idTag's status, never ConcurrentTx (see :meth:`_decide`)."""
        async with self.store.transaction() as tx:
            return await self._decide(tx, id_tag, self._clock())

    async def start_transaction(self, charger_id: str, *, connector_id: int, id_tag: str, meter_start: int,
                                timestamp: str, reservation_id: int | None = None) -> StartAnswer:
        """Always answers with a transactionId (OCPP-NOTES "Transactions": a
        StartTransaction is never refused, or the charger retries it forever).

        The idTag is re-validated; a non-Accepted status tells the charger to stop. A
        repeated StartTransaction (same charger, connector, idTag, meterStart, timestamp) gets
        the transactionId it got the first time, without a second session.
        """
        now = self._clock()
        started = charger_time(timestamp, now)
        async with self.store.transaction() as tx:
            decision = await self._decide(tx, id_tag, now, charging_at=(charger_id, connector_id))
            earlier = await tx.find_started(charger_id, connector_id, id_tag, meter_start, timestamp)
            # A retry comes while the first is still running. A stopped match with an unset clock
            # is a new session of a charger that lost its clock again, not a retry.
            if earlier is not None and (earlier.active or not started.suspect):
                log.info("session.start_repeated", charger_id=charger_id, transaction_id=earlier.id)
                return StartAnswer(earlier.id, decision, duplicate=True)
            if connector_id < 1:
                # OCPP 1.6: connectorId > 0 in StartTransaction. Answer (so the charger does not retry
                # forever) with Invalid so it stops, and keep the row; nothing goes to the cloud.
                decision = AuthDecision(IdTagStatus.INVALID)
            transaction_id = await tx.insert_transaction(
                charger_id=charger_id, connector_id=connector_id, id_tag=id_tag, id_tag_status=str(decision.status),
                meter_start=meter_start, started_at=started.at, reported_started_at=timestamp,
                reservation_id=reservation_id, clock_suspect=started.suspect,
            )
            if reservation_id is not None:
                await tx.end_reservation(reservation_id, "used", now)
            if connector_id >= 1:
                # One transaction per connector: one still running there was forgotten by the charger.
                await self._write_off(tx, charger_id, reason="new_transaction", now=now, connector_id=connector_id,
                                      except_id=transaction_id)
                await tx.emit(SessionStarted(
                    charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id, id_tag=id_tag,
                    id_tag_status=decision.status, meter_start_wh=meter_wh(meter_start), started_at=started.at,
                    reservation_id=reservation_id, clock_suspect=started.suspect,
                ))
        log.info("session.started", charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id,
                 id_tag_status=str(decision.status), clock_suspect=started.suspect)
        if connector_id >= 1:
            self._tell("session_started", charger_id, connector_id, transaction_id, started.at)
        return StartAnswer(transaction_id, decision, duplicate=False)

    async def meter_values(self, charger_id: str, *, connector_id: int, transaction_id: int | None,
                           meter_value: Sequence[Mapping[str, Any]]) -> int:
        """Relay each MeterValue element that has energy or power as one SessionMeter.

        Returns how many were relayed; unreadable samples are skipped, never refused.
        """
        now = self._clock()
        bodies: list[SessionMeter | SessionAnomaly] = []
        draw: tuple[float | None, float | None] | None = None
        out_of_range: list[str] = []
        for element in meter_value:
            if connector_id < 0 or not isinstance(element, Mapping):
                continue
            reading = read_sampled_values(element.get("sampled_value") or [])
            out_of_range.extend(reading.out_of_range)
            if reading.current_a is not None or reading.power_w is not None:
                draw = (reading.current_a, reading.power_w)
            if reading.empty:
                continue
            sampled = charger_time(element.get("timestamp"), now)
            bodies.append(SessionMeter(
                charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id,
                energy_register_wh=reading.energy_register_wh, power_w=reading.power_w,
                sampled_at=sampled.at, clock_suspect=sampled.suspect,
            ))
        if out_of_range:
            # Kept out of the energy figures (the other samples still count) and told to the cloud, once per CALL.
            log.warning("meter.out_of_range", charger_id=charger_id, connector_id=connector_id,
                        transaction_id=transaction_id, values=out_of_range[:5])
            bodies.append(SessionAnomaly(
                kind="meter_out_of_range", charger_id=charger_id, transaction_id=transaction_id,
                session_charger_id=charger_id if transaction_id is not None else None,
                value=out_of_range[0], observed_at=now,
                detail=(f"{len(out_of_range)} meter value(s) beyond what a register holds (energy up to "
                        f"{METER_MAX_WH} Wh) were kept out of the figures; the first: {out_of_range[0]!r}")))
        async with self.store.writes() as tx:  # group commit
            await tx.touch_charger(charger_id, now)
            for body in bodies:
                await tx.emit(body)
        if draw is not None and connector_id >= 1:
            self._tell("meter_sample", charger_id, connector_id, transaction_id, *draw)
        return len(bodies)

    async def stop_transaction(self, charger_id: str, *, transaction_id: int, meter_stop: int, timestamp: str,
                               id_tag: str | None = None, reason: str | None = None,
                               transaction_data: Sequence[Mapping[str, Any]] | None = None) -> AuthDecision | None:
        """Always answered (OCPP-NOTES "Transactions"). A stop of an unknown transaction or of -1 (the
        charger never got a transactionId) is kept and relayed as reconciled; a repeated stop is
        relayed once. Energy is never negative; a stop never precedes its start.
        """
        now = self._clock()
        reported = charger_time(timestamp, now)
        stop_wh = meter_wh(meter_stop)
        if reason is None:
            reason = DEFAULT_STOP_REASON
        async with self.store.transaction() as tx:
            decision = authorize(await tx.get_auth_entry(id_tag), now) if id_tag else None
            record = await tx.get_transaction(transaction_id) if transaction_id > 0 else None
            if record is not None and record.charger_id == charger_id:
                ended = await self._stop_known(tx, record, meter_stop=meter_stop, reported=reported,
                                               timestamp=timestamp, id_tag=id_tag, reason=reason)
            elif record is not None:
                # Another charger's transaction: answered (or this charger retries it forever), never applied.
                # Kept once (a retried stop is not reported twice) and relayed as an anomaly.
                first = await tx.record_reconciled_stop(
                    charger_id=charger_id, transaction_id=transaction_id, meter_stop=meter_stop,
                    reported_stopped_at=timestamp, stopped_at=reported.at, id_tag=id_tag, reason=reason, now=now,
                )
                if first:
                    await tx.emit(SessionAnomaly(
                        kind="foreign_stop", charger_id=charger_id, transaction_id=transaction_id,
                        session_charger_id=record.charger_id, meter_wh=stop_wh, observed_at=now,
                        detail=(f"StopTransaction from {charger_id} for transaction {transaction_id} of "
                                f"{record.charger_id} (meterStop {stop_wh} Wh): answered, not applied")[:500]))
                log.warning("session.foreign_stop", charger_id=charger_id, transaction_id=transaction_id,
                            session_charger_id=record.charger_id, repeated=not first)
                return decision
            else:
                ended = None
                # Never seen start (offline queue, lost CALLRESULT, -1, or another charger's id).
                first = await tx.record_reconciled_stop(
                    charger_id=charger_id, transaction_id=transaction_id, meter_stop=meter_stop,
                    reported_stopped_at=timestamp, stopped_at=reported.at, id_tag=id_tag, reason=reason, now=now,
                )
                if not first:
                    log.info("session.stop_repeated", charger_id=charger_id, transaction_id=transaction_id,
                             reconciled=True)
                    return decision
                begin_wh = transaction_begin_wh(transaction_data)
                energy = billable_energy_wh(begin_wh, stop_wh)
                await tx.emit(SessionStopped(
                    charger_id=charger_id, transaction_id=transaction_id, id_tag=id_tag, meter_start_wh=begin_wh,
                    meter_stop_wh=stop_wh, energy_wh=energy, started_at=None, stopped_at=reported.at, reason=reason,
                    clock_suspect=reported.suspect, reconciled=True,
                ))
        if ended is not None:
            record, stopped_at = ended
            self._tell("session_stopped", charger_id, record.connector_id, record.id, stopped_at)
            return decision
        if record is not None:  # a repeated stop of a known session
            return decision
        log.warning("session.stop_reconciled", charger_id=charger_id, transaction_id=transaction_id,
                    energy_wh=energy)
        return decision

    async def _stop_known(self, tx: StoreTransaction, record: TransactionRecord, *, meter_stop: int,
                          reported: ChargerTime, timestamp: str, id_tag: str | None,
                          reason: str | None) -> tuple[TransactionRecord, datetime] | None:
        """Stop a session the edge started. Returns it and its end, or None when it was stopped before."""
        stopped = stop_time(reported, record.started_at)
        first = await tx.finish_transaction(
            record.id, meter_stop=meter_stop, stopped_at=stopped.at, reported_stopped_at=timestamp,
            stop_id_tag=id_tag, reason=reason, clock_suspect=stopped.suspect,
        )
        if not first:
            log.info("session.stop_repeated", charger_id=record.charger_id, transaction_id=record.id)
            return None
        await tx.end_tx_profiles(record.charger_id, record.connector_id)  # §3.13.2: one transaction only
        start_wh, stop_wh = meter_wh(record.meter_start), meter_wh(meter_stop)
        energy = billable_energy_wh(start_wh, stop_wh)
        await tx.emit(SessionStopped(
            charger_id=record.charger_id, transaction_id=record.id, id_tag=id_tag or record.id_tag,
            meter_start_wh=start_wh, meter_stop_wh=stop_wh, energy_wh=energy, started_at=record.started_at,
            stopped_at=stopped.at, reason=reason, clock_suspect=stopped.suspect or record.clock_suspect,
        ))
        log.info("session.stopped", charger_id=record.charger_id, transaction_id=record.id, energy_wh=energy,
                 clock_suspect=stopped.suspect or record.clock_suspect)
        return record, stopped.at

    # --- the cloud link -----------------------------------------------------------------

    async def say_hello(self, edge_version: str) -> None:
        """Queue a SiteHello so the cloud can resync what the site lacks (e.g. the auth list)."""
        async with self.store.transaction() as tx:
            version = await tx.authlist_version()
            await tx.emit(SiteHello(edge_version=edge_version, authlist_version=version,
                                    high_water=await tx.high_water()))

    async def report_high_water(self) -> None:
        """Queue the store's high-water marks (the uplink does it every minute while connected), so
        the cloud also learns of a lost tail: envelopes after which nothing else came."""
        async with self.store.transaction() as tx:
            await tx.emit(SiteHighWater(high_water=await tx.high_water(), at=self._clock()))

    async def report_sessions(self) -> SessionsOpen:
        """Queue the open transactions, and those stopped in the last :data:`ENDED_WITHIN` with their final
        figures, so the cloud closes what the edge no longer has (reconciliation; see the README)."""
        now = self._clock()
        async with self.store.transaction() as tx:
            open_ = await tx.transactions(state="active", limit=MAX_OPEN_REPORTED)
            ended = await tx.ended_transactions(since=now - ENDED_WITHIN, limit=MAX_ENDED_REPORTED)
            report = SessionsOpen(
                open=[OpenTransaction(charger_id=t.charger_id, connector_id=t.connector_id, transaction_id=t.id)
                      for t in open_ if t.connector_id >= 1
                      and (t.written_off_at is None or now - t.written_off_at < WRITTEN_OFF_GRACE)],
                ended=[EndedTransaction(
                    charger_id=t.charger_id, transaction_id=t.id, meter_start_wh=meter_wh(t.meter_start),
                    meter_stop_wh=meter_wh(t.meter_stop or 0),
                    energy_wh=billable_energy_wh(meter_wh(t.meter_start), meter_wh(t.meter_stop or 0)),
                    started_at=t.started_at, stopped_at=t.stopped_at or now, reason=t.reason)
                    for t in ended if t.connector_id >= 1 and t.meter_stop is not None],
                last_transaction_id=await tx.last_transaction_id(), at=now)
            await tx.emit(report)
        return report

    async def report_sessions_forever(self, every: float, connected: asyncio.Event) -> None:
        """Runs until cancelled: :meth:`report_sessions` once connected, then every ``every`` seconds while
        connected (offline, reports would only pile up in the outbox)."""
        while True:
            await connected.wait()
            try:
                await self.report_sessions()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a busy disk must not end the reports for good
                log.warning("sessions.report_failed", error=repr(exc))
            await asyncio.sleep(every)

    async def handle_command(self, command: Command) -> CommandStatus:
        """Apply a cloud command and queue its result, in one transaction.

        A charger command is sent to the charger first (outside any store transaction: the
        charger may take seconds), then its result is stored; a redelivered charger command is
        answered again from the record, not sent again.
        """
        body = parse_body(command.type, command.body, COMMAND_BODIES)
        if not isinstance(body, AuthListUpdate | SetPowerLimit | Resend) and command.site_id == self.site_id \
                and not command.expired(self._clock()):
            return await self._handle_charger_command(command, body)
        async with self.store.transaction() as tx:
            outcome = await self._apply(tx, command)
            await tx.emit(CommandResult(command_id=command.id, command_type=command.type, status=outcome.status,
                                        detail=outcome.detail, data=dict(outcome.data or {})))
        if isinstance(body, SetPowerLimit) and outcome.status == CommandStatus.ACCEPTED and self.power is not None:
            self.power.set_limit(float((outcome.data or {})["limit_a"]))  # stored with the result: now applied
        COMMANDS.labels(status=str(outcome.status)).inc()
        log.info("command.handled", command_id=str(command.id), command_type=command.type,
                 status=str(outcome.status), detail=outcome.detail)
        return outcome.status

    async def _handle_charger_command(self, command: Command, body: Any) -> CommandStatus:
        earlier = await self._handled(command.id)
        if earlier is not None:
            outcome = CommandOutcome(CommandStatus(earlier), "already handled; not sent to the charger again")
        else:
            # The charger's answer is awaited only until the command expires: the cloud stops waiting then.
            left = (command.expires_at - self._clock()).total_seconds()
            outcome = await self._run_charger_command(body, max(0.1, min(self.call_timeout, left)))
        async with self.store.transaction() as tx:
            await tx.mark_command_handled(command.id, str(outcome.status), self._clock())
            await tx.emit(CommandResult(command_id=command.id, command_type=command.type, status=outcome.status,
                                        detail=outcome.detail, data=dict(outcome.data or {})))
        COMMANDS.labels(status=str(outcome.status)).inc()
        log.info("command.handled", command_id=str(command.id), command_type=command.type,
                 status=str(outcome.status), detail=outcome.detail)
        return outcome.status

    async def _handled(self, command_id: uuid.UUID) -> str | None:
        async with self.store.transaction() as tx:
            return await tx.handled_command(command_id)

    async def _run_charger_command(self, body: Any, answer_within: float | None = None) -> CommandOutcome:
        if isinstance(body, AcceptCharger):
            try:
                triggered = await self.accept_charger(body.charger_id)
            except LookupError as exc:
                return CommandOutcome(CommandStatus.REJECTED, str(exc))
            return CommandOutcome(CommandStatus.ACCEPTED, "charger accepted", {"boot_triggered": triggered})
        action, payload = ocpp_request(body)
        try:
            answer = await self.call_charger(body.charger_id, action, payload, origin="cloud",
                                             answer_within=answer_within)
        except ChargerCallRefused as exc:
            return CommandOutcome(CommandStatus.REJECTED, str(exc))
        except ChargerCallError as exc:
            return CommandOutcome(CommandStatus.FAILED, str(exc))
        data = {"action": action, "response": answer.as_dict()}
        if answer.kind != "result":
            return CommandOutcome(CommandStatus.FAILED, f"charger answered {answer.error_code}", data)
        status = answer.payload.get("status")
        if status in ("Accepted", "Unlocked", "Scheduled"):
            return CommandOutcome(CommandStatus.ACCEPTED, f"charger answered {status}", data)
        return CommandOutcome(CommandStatus.REJECTED, f"charger answered {status}", data)

    async def answer_command(self, command_id: uuid.UUID, command_type: str, status: CommandStatus,
                             detail: str) -> None:
        """Queue a result for a command that could not be handled (malformed, or it failed)."""
        async with self.store.transaction() as tx:
            await tx.emit(CommandResult(command_id=command_id, command_type=command_type, status=status,
                                        detail=detail[:1000]))
        COMMANDS.labels(status=str(status)).inc()

    async def _apply(self, tx: StoreTransaction, command: Command) -> CommandOutcome:
        if command.site_id != self.site_id:
            return CommandOutcome(CommandStatus.REJECTED, f"command is for site {command.site_id!r}")
        if command.expired(self._clock()):
            return CommandOutcome(CommandStatus.EXPIRED, f"expired at {command.expires_at.isoformat()}")
        body = parse_body(command.type, command.body, COMMAND_BODIES)
        if isinstance(body, AuthListUpdate):
            return await self._apply_authlist(tx, body)
        if isinstance(body, Resend):
            return await self._resend(tx, command, body)
        if isinstance(body, SetPowerLimit):
            if self.power is None:
                return CommandOutcome(CommandStatus.REJECTED, "this site has no load management ([power] table)")
            amps = self.power.amps(limit_a=body.limit_a, limit_w=body.limit_w)
            await self._keep_power_limit(tx, amps, origin=f"cloud command {command.id}")
            return CommandOutcome(CommandStatus.ACCEPTED, f"site limit set to {amps:g} A per phase",
                                  {"limit_a": amps})
        return CommandOutcome(CommandStatus.REJECTED, f"command type {command.type!r} is not supported")

    async def _resend(self, tx: StoreTransaction, command: Command, body: Resend) -> CommandOutcome:
        """Queue again the kept envelopes of a range the cloud missed; say what is gone for good."""
        answer: dict[str, Any] = {"command_id": str(command.id), "store_id": body.store_id,
                                  "category": body.category, "first_seq": body.first_seq, "last_seq": body.last_seq}
        if body.store_id != self.store.store_id:
            await tx.emit(SiteResent(**answer, resent=0, unknown_store=True))
            log.warning("uplink.resend_unknown_store", store_id=body.store_id, ours=self.store.store_id)
            return CommandOutcome(CommandStatus.REJECTED, f"this site's store is {self.store.store_id}, "
                                  f"not {body.store_id}: its envelopes are not here", {"unknown_store": True})
        outcome = await tx.resend(body.category, body.first_seq, body.last_seq)
        await tx.emit(SiteResent(**answer, resent=outcome.resent, gone=outcome.gone))
        RESENT.inc(outcome.resent)
        gone = sum(last - first + 1 for first, last in outcome.gone)
        RESEND_GONE.inc(gone)
        log.info("uplink.resend", category=body.category, first_seq=body.first_seq, last_seq=body.last_seq,
                 resent=outcome.resent, pending=outcome.pending, gone=gone)
        return CommandOutcome(CommandStatus.ACCEPTED, f"{outcome.resent} envelopes queued again, {gone} gone",
                              {"resent": outcome.resent, "pending": outcome.pending,
                               "gone": [list(r) for r in outcome.gone]})

    # --- the site's power limit ---------------------------------------------------------

    async def set_power_limit(self, *, limit_a: float | None = None, limit_w: float | None = None,
                              origin: str) -> float:
        """Change the site limit now and keep it across restarts. Returns the amps per phase applied.

        Raises LookupError when the site has no load management.
        """
        if self.power is None:
            raise LookupError("this site has no load management: the site file has no [power] table")
        amps = self.power.amps(limit_a=limit_a, limit_w=limit_w)
        async with self.store.transaction() as tx:
            await self._keep_power_limit(tx, amps, origin=origin)
        self.power.set_limit(amps)
        return amps

    async def _keep_power_limit(self, tx: StoreTransaction, amps: float, *, origin: str) -> None:
        assert self.power is not None
        await tx.set_meta(POWER_LIMIT_KEY, json.dumps({
            "limit_a": amps, "configured_limit_a": self.power.configured_limit_a, "origin": origin,
            "set_at": self._clock().isoformat()}))
        log.info("site.power_limit_set", limit_a=amps, origin=origin)

    async def kept_power_limit(self) -> float | None:
        """The limit changed at run time, if still valid: one set while the site file said what it
        says now. After the site file's limit is edited, the file wins (and the kept one is dropped)."""
        if self.power is None:
            return None
        async with self.store.transaction() as tx:
            raw = await tx.get_meta(POWER_LIMIT_KEY)
            if raw is None:
                return None
            kept = json.loads(raw)
            if kept.get("configured_limit_a") != self.power.configured_limit_a:
                await tx.set_meta(POWER_LIMIT_KEY, None)
                log.warning("site.power_limit_dropped", kept_limit_a=kept.get("limit_a"),
                            reason="the site file's limit changed since it was set", origin=kept.get("origin"))
                return None
        return float(kept["limit_a"])

    async def _apply_authlist(self, tx: StoreTransaction, update: AuthListUpdate) -> CommandOutcome:
        current = await tx.authlist_version()
        if update.full:
            await tx.replace_auth_list(update.entries, update.version)
            return CommandOutcome(CommandStatus.ACCEPTED, f"list replaced: {len(update.entries)} entries",
                                  {"authlist_version": update.version})
        if update.version <= current:
            # Idempotent by version: a redelivered or stale delta changes nothing.
            return CommandOutcome(CommandStatus.ACCEPTED, f"already at version {current}",
                                  {"authlist_version": current})
        if update.since_version > current:
            return CommandOutcome(
                CommandStatus.REJECTED,
                f"delta since version {update.since_version} but the site has {current}; send the full list",
                {"authlist_version": current},
            )
        await tx.upsert_auth_entries(update.entries, update.version)
        return CommandOutcome(CommandStatus.ACCEPTED, f"{len(update.entries)} entries updated",
                              {"authlist_version": update.version})
