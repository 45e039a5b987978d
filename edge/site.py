"""The site model: what the edge does with each charger message and each cloud command.

OCPP handlers (:mod:`edge.ocpp`) and the uplink (:mod:`edge.uplink`) stay thin and call one
method here. Each method is one store transaction: the state change and the uplink envelopes it
causes commit together, or not at all.

:class:`Site` keeps the chargers (CALLs, boot, status), the idTags and the site's reports; it hands
admission to :mod:`edge.admission`, sessions to :mod:`edge.sessions`, cloud commands to
:mod:`edge.commands` (one table of command types) and the kept power limit to
:mod:`edge.powerlimit`. The port to chargers is in :mod:`edge.chargerlink`, the masking of
credentials in :mod:`edge.configkeys`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog

from edge.admission import Admission, ChargerAdmission
from edge.chargerlink import (
    CHARGER_ACTIONS,
    NOT_WHILE_PENDING,
    CallAnswer,
    ChargerCallError,
    ChargerCallRefused,
    ChargerCallTimeout,
    ChargerLink,
    ChargerNotAccepted,
    ChargerNotConnected,
    NoChargers,
)
from edge.commands import CommandOutcome, Commands, ocpp_request
from edge.configkeys import KEY_ADOPTED, MASK, SECRET_KEYS, is_secret_key, mask_secrets
from edge.domain import AuthDecision, AuthEntry, billable_energy_wh, charger_time, meter_wh
from edge.powerlimit import POWER_LIMIT_KEY, PowerControl, keep_power_limit
from edge.powerlimit import kept_power_limit as _kept_power_limit
from edge.security import hash_key, valid_key
from edge.sessions import DEFAULT_STOP_REASON, Sessions, StartAnswer, write_off
from edge.store import Store, StoreTransaction, TransactionRecord
from mqtt.envelope import Command
from mqtt.payloads import (
    ChargerBoot,
    ChargerCall,
    ChargerConnection,
    ChargerNotification,
    ChargerStatus,
    CommandStatus,
    EndedTransaction,
    IdTagStatus,
    OpenTransaction,
    SessionsOpen,
    SiteHello,
    SiteHighWater,
)

__all__ = [
    "CHARGER_ACTIONS", "CHARGER_STATES", "DEFAULT_STOP_REASON", "FREE_STATES", "KEY_ADOPTED", "MASK",
    "NOT_WHILE_PENDING", "POWER_LIMIT_KEY", "SECRET_KEYS", "Admission", "BootAnswer", "BootInfo", "CallAnswer",
    "ChargerCallError", "ChargerCallRefused", "ChargerCallTimeout", "ChargerLink", "ChargerNotAccepted",
    "ChargerNotConnected", "CommandOutcome", "PowerControl", "Site", "SiteObserver", "StartAnswer",
    "is_secret_key", "mask_secrets", "ocpp_request", "utc_now",
]

log = structlog.get_logger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class BootInfo:
    vendor: str
    model: str
    serial: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class BootAnswer:
    status: Literal["Accepted", "Pending", "Rejected"]
    interval: int
    current_time: datetime


CHARGER_STATES = frozenset({"Available", "Unavailable", "Faulted"})
"""The only statuses connector 0 (the whole charger) can have."""

FREE_STATES = frozenset({"Available", "Preparing"})
"""Connector statuses that no transaction has (OCPP 1.6 §4.9): one reported after a start ends it there."""


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


SESSIONS_REPORT_EVERY = 300.0
"""Default seconds between two ``session.open`` reports (``EVPARK_EDGE_SESSIONS_REPORT_EVERY``)."""
WRITTEN_OFF_GRACE = timedelta(days=1)
"""A session the charger forgot stays in the ``session.open`` report this long for its late StopTransaction
(ended with the charger's own figures); after that the cloud closes it with the energy it knows."""
ENDED_WITHIN = timedelta(days=1)
"""A ``session.open`` report carries the transactions stopped this recently, with their figures."""
MAX_OPEN_REPORTED = 10_000
MAX_ENDED_REPORTED = 500


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
        self.chargers: ChargerLink = NoChargers()
        """Set by the composition root once the OCPP server exists."""
        self.cloud_online: Callable[[], bool] = lambda: False
        """Whether the uplink is connected; set by the composition root."""
        self.observers: list[SiteObserver] = []
        self.power: PowerControl | None = None
        """Load management, when the site file has a [power] table; set by the composition root."""
        self._clock = clock
        self.admission = ChargerAdmission(self)
        self.sessions = Sessions(self)
        self.commands = Commands(self)

    def now(self) -> datetime:
        """The site's clock (UTC)."""
        return self._clock()

    def tell(self, event: str, *args: Any) -> None:
        """Tell the observers (a :class:`SiteObserver` method name and its arguments)."""
        for observer in self.observers:
            try:
                getattr(observer, event)(*args)
            except Exception:  # an observer's bug must not fail a charger's CALL
                log.exception("site.observer_failed", observer=type(observer).__name__, event=event)

    # --- chargers (admission: edge.admission) ------------------------------------------

    async def may_connect(self, charger_id: str) -> bool:
        """Whether a charger id may open an OCPP connection at all (else HTTP 404 at the handshake)."""
        return await self.admission.may_connect(charger_id)

    async def admit(self, charger_id: str, authorization: str | None, *, tls: bool,
                    certificate_cn: str | None = None) -> Admission:
        """The handshake decision (:meth:`ChargerAdmission.admit`)."""
        return await self.admission.admit(charger_id, authorization, tls=tls, certificate_cn=certificate_cn)

    async def set_security_profile(self, charger_id: str, security_profile: int) -> None:
        """Raise a charger's Security Profile (:meth:`ChargerAdmission.set_security_profile`)."""
        await self.admission.set_security_profile(charger_id, security_profile)

    async def set_auth_key(self, charger_id: str, key: str, security_profile: int) -> None:
        """Store a charger's AuthorizationKey for Security Profile 1 or 2 (registers the id if new)."""
        await self.admission.set_auth_key(charger_id, key, security_profile)

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
            forgotten = await write_off(tx, charger_id, reason="reboot", now=now)
            await tx.end_tx_profiles(charger_id)
            await tx.emit(ChargerBoot(charger_id=charger_id, vendor=info.vendor, model=info.model,
                                      serial_number=info.serial, firmware_version=info.firmware,
                                      registration_status=status))
        log.info("charger.booted", charger_id=charger_id, vendor=info.vendor, model=info.model,
                 registered=not known, status=status)
        self._tell_written_off(forgotten, now)
        self.tell("charger_seen", charger_id, 0)
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
                forgotten = await write_off(tx, charger_id, reason=f"connector_{status.lower()}", now=now,
                                                  connector_id=connector_id, started_before=observed.at)
                if forgotten:
                    await tx.end_tx_profiles(charger_id, connector_id)
            self._tell_written_off(forgotten, now)
        if connector_id >= 0:
            self.tell("charger_seen", charger_id, connector_id)

    def _tell_written_off(self, forgotten: Sequence[TransactionRecord], now: datetime) -> None:
        for record in forgotten:
            if record.connector_id >= 1:
                self.tell("session_stopped", record.charger_id, record.connector_id, record.id, now)

    # --- authorization and sessions (edge.sessions) ------------------------------------

    async def authorize(self, id_tag: str) -> AuthDecision:
        """Authorize.req: the idTag's status, never ConcurrentTx."""
        return await self.sessions.authorize(id_tag)

    async def start_transaction(self, charger_id: str, *, connector_id: int, id_tag: str, meter_start: int,
                                timestamp: str, reservation_id: int | None = None) -> StartAnswer:
        """StartTransaction.req: always answered with a transactionId (:meth:`Sessions.start_transaction`)."""
        return await self.sessions.start_transaction(charger_id, connector_id=connector_id, id_tag=id_tag,
                                                     meter_start=meter_start, timestamp=timestamp,
                                                     reservation_id=reservation_id)

    async def meter_values(self, charger_id: str, *, connector_id: int, transaction_id: int | None,
                           meter_value: Sequence[Mapping[str, Any]]) -> int:
        """MeterValues.req: how many samples were relayed (:meth:`Sessions.meter_values`)."""
        return await self.sessions.meter_values(charger_id, connector_id=connector_id,
                                                transaction_id=transaction_id, meter_value=meter_value)

    async def stop_transaction(self, charger_id: str, *, transaction_id: int, meter_stop: int, timestamp: str,
                               id_tag: str | None = None, reason: str | None = None,
                               transaction_data: Sequence[Mapping[str, Any]] | None = None) -> AuthDecision | None:
        """StopTransaction.req: always answered (:meth:`Sessions.stop_transaction`)."""
        return await self.sessions.stop_transaction(charger_id, transaction_id=transaction_id,
                                                    meter_stop=meter_stop, timestamp=timestamp, id_tag=id_tag,
                                                    reason=reason, transaction_data=transaction_data)

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

    # --- cloud commands (edge.commands) -------------------------------------------------

    async def handle_command(self, command: Command) -> CommandStatus:
        """Apply a cloud command and queue its result, in one transaction.

        A charger command is sent to the charger first (outside any store transaction: the
        charger may take seconds), then its result is stored; a redelivered charger command is
        answered again from the record, not sent again.
        """
        return await self.commands.handle(command)

    async def answer_command(self, command_id: uuid.UUID, command_type: str, status: CommandStatus,
                             detail: str) -> None:
        """Queue a result for a command that could not be handled (malformed, or it failed)."""
        await self.commands.answer(command_id, command_type, status, detail)

    # --- the site's power limit (edge.powerlimit) ---------------------------------------

    async def set_power_limit(self, *, limit_a: float | None = None, limit_w: float | None = None,
                              origin: str) -> float:
        """Change the site limit now and keep it across restarts. Returns the amps per phase applied.

        Raises LookupError when the site has no load management.
        """
        if self.power is None:
            raise LookupError("this site has no load management: the site file has no [power] table")
        amps = self.power.amps(limit_a=limit_a, limit_w=limit_w)
        async with self.store.transaction() as tx:
            await keep_power_limit(tx, self.power, amps, origin=origin, now=self._clock())
        self.power.set_limit(amps)
        return amps

    async def kept_power_limit(self) -> float | None:
        """The limit changed at run time, if still valid: one set while the site file said what it
        says now. After the site file's limit is edited, the file wins (and the kept one is dropped)."""
        if self.power is None:
            return None
        return await _kept_power_limit(self.store, self.power)
