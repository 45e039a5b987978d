"""The site model: what the edge does with each charger message and each cloud command.

OCPP handlers (:mod:`edge.ocpp_server`) and the uplink (:mod:`edge.uplink`) stay thin and
call one method here. Each method is one store transaction: the state change and the
uplink envelopes it causes commit together, or not at all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from edge.domain import (
    AuthDecision,
    authorize,
    billable_energy_wh,
    charger_time,
    meter_wh,
    read_sampled_values,
    stop_time,
    transaction_begin_wh,
)
from edge.metrics import COMMANDS
from edge.store import Store, StoreTransaction
from mqtt.envelope import Command, CommandResult, parse_body
from mqtt.payloads import (
    COMMAND_BODIES,
    AuthListUpdate,
    ChargerBoot,
    ChargerStatus,
    CommandStatus,
    IdTagStatus,
    SessionMeter,
    SessionStarted,
    SessionStopped,
    SiteHello,
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


@dataclass(frozen=True, slots=True)
class BootAnswer:
    status: Literal["Accepted", "Rejected"]
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


class Site:
    """One parking site's chargers, sessions and local authorization list."""

    def __init__(self, store: Store, *, site_id: str, heartbeat_interval: int, accept_unknown_chargers: bool,
                 clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.site_id = site_id
        self.heartbeat_interval = heartbeat_interval
        self.accept_unknown_chargers = accept_unknown_chargers
        self._clock = clock

    # --- chargers -----------------------------------------------------------------------

    async def may_connect(self, charger_id: str) -> bool:
        """Whether a charger may open an OCPP connection (else HTTP 404 at the handshake)."""
        if self.accept_unknown_chargers:
            return True
        return await self.store.get_charger(charger_id) is not None

    async def boot_accepted(self, charger_id: str) -> bool:
        """Whether the charger's boot was accepted, in this or an earlier connection."""
        charger = await self.store.get_charger(charger_id)
        return charger is not None and charger.accepted

    async def boot(self, charger_id: str, info: BootInfo) -> BootAnswer:
        now = self._clock()
        async with self.store.transaction() as tx:
            known = await tx.get_charger(charger_id) is not None
            if not known and not self.accept_unknown_chargers:
                # Provisioning changed while it was connected; it stays silent for `interval`.
                log.warning("charger.boot_rejected", charger_id=charger_id)
                return BootAnswer("Rejected", self.heartbeat_interval, now)
            await tx.record_boot(charger_id, vendor=info.vendor, model=info.model, serial=info.serial,
                                 firmware=info.firmware, registration_status="Accepted", now=now)
            await tx.emit(ChargerBoot(charger_id=charger_id, vendor=info.vendor, model=info.model,
                                      serial_number=info.serial, firmware_version=info.firmware,
                                      registration_status="Accepted"))
        log.info("charger.booted", charger_id=charger_id, vendor=info.vendor, model=info.model,
                 registered=not known)
        return BootAnswer("Accepted", self.heartbeat_interval, now)

    async def heartbeat(self, charger_id: str) -> datetime:
        now = self._clock()
        async with self.store.transaction() as tx:
            await tx.touch_charger(charger_id, now)
        return now

    async def connector_status(self, charger_id: str, connector_id: int, *, status: str, error_code: str,
                               info: str | None, timestamp: str | None) -> None:
        now = self._clock()
        observed = charger_time(timestamp, now)
        async with self.store.transaction() as tx:
            await tx.touch_charger(charger_id, now)
            if connector_id < 0:
                log.warning("charger.bad_connector_id", charger_id=charger_id, connector_id=connector_id)
                return
            await tx.record_connector_status(charger_id, connector_id, status=status, error_code=error_code,
                                             info=info, at=observed.at)
            await tx.emit(ChargerStatus(charger_id=charger_id, connector_id=connector_id, status=status,
                                        error_code=error_code, info=info, observed_at=observed.at,
                                        clock_suspect=observed.suspect))

    # --- authorization and sessions -----------------------------------------------------

    async def authorize(self, id_tag: str) -> AuthDecision:
        async with self.store.transaction() as tx:
            return authorize(await tx.get_auth_entry(id_tag), self._clock())

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
            decision = authorize(await tx.get_auth_entry(id_tag), now)
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
            if connector_id >= 1:
                await tx.emit(SessionStarted(
                    charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id, id_tag=id_tag,
                    id_tag_status=decision.status, meter_start_wh=meter_wh(meter_start), started_at=started.at,
                    reservation_id=reservation_id, clock_suspect=started.suspect,
                ))
        log.info("session.started", charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id,
                 id_tag_status=str(decision.status), clock_suspect=started.suspect)
        return StartAnswer(transaction_id, decision, duplicate=False)

    async def meter_values(self, charger_id: str, *, connector_id: int, transaction_id: int | None,
                           meter_value: Sequence[Mapping[str, Any]]) -> int:
        """Relay each MeterValue element that has energy or power as one SessionMeter.

        Returns how many were relayed; unreadable samples are skipped, never refused.
        """
        now = self._clock()
        bodies = []
        for element in meter_value:
            if connector_id < 0 or not isinstance(element, Mapping):
                continue
            reading = read_sampled_values(element.get("sampled_value") or [])
            if reading.empty:
                continue
            sampled = charger_time(element.get("timestamp"), now)
            bodies.append(SessionMeter(
                charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id,
                energy_register_wh=reading.energy_register_wh, power_w=reading.power_w,
                sampled_at=sampled.at, clock_suspect=sampled.suspect,
            ))
        async with self.store.transaction() as tx:
            await tx.touch_charger(charger_id, now)
            for body in bodies:
                await tx.emit(body)
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
        async with self.store.transaction() as tx:
            decision = authorize(await tx.get_auth_entry(id_tag), now) if id_tag else None
            record = await tx.get_transaction(transaction_id) if transaction_id > 0 else None
            if record is not None and record.charger_id == charger_id:
                stopped = stop_time(reported, record.started_at)
                first = await tx.finish_transaction(
                    record.id, meter_stop=meter_stop, stopped_at=stopped.at, reported_stopped_at=timestamp,
                    stop_id_tag=id_tag, reason=reason, clock_suspect=stopped.suspect,
                )
                if not first:
                    log.info("session.stop_repeated", charger_id=charger_id, transaction_id=transaction_id)
                    return decision
                start_wh = meter_wh(record.meter_start)
                energy = billable_energy_wh(start_wh, stop_wh)
                await tx.emit(SessionStopped(
                    charger_id=charger_id, transaction_id=record.id, id_tag=id_tag or record.id_tag,
                    meter_start_wh=start_wh, meter_stop_wh=stop_wh, energy_wh=energy, started_at=record.started_at,
                    stopped_at=stopped.at, reason=reason, clock_suspect=stopped.suspect or record.clock_suspect,
                ))
                log.info("session.stopped", charger_id=charger_id, transaction_id=record.id, energy_wh=energy,
                         clock_suspect=stopped.suspect or record.clock_suspect)
                return decision
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
        log.warning("session.stop_reconciled", charger_id=charger_id, transaction_id=transaction_id,
                    energy_wh=energy)
        return decision

    # --- the cloud link -----------------------------------------------------------------

    async def say_hello(self, edge_version: str) -> None:
        """Queue a SiteHello so the cloud can resync what the site lacks (e.g. the auth list)."""
        async with self.store.transaction() as tx:
            version = await tx.authlist_version()
            await tx.emit(SiteHello(edge_version=edge_version, authlist_version=version))

    async def handle_command(self, command: Command) -> CommandStatus:
        """Apply a cloud command and queue its result, in one transaction."""
        async with self.store.transaction() as tx:
            outcome = await self._apply(tx, command)
            await tx.emit(CommandResult(command_id=command.id, command_type=command.type, status=outcome.status,
                                        detail=outcome.detail, data=dict(outcome.data or {})))
        COMMANDS.labels(status=str(outcome.status)).inc()
        log.info("command.handled", command_id=str(command.id), command_type=command.type,
                 status=str(outcome.status), detail=outcome.detail)
        return outcome.status

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
        return CommandOutcome(CommandStatus.REJECTED, f"command type {command.type!r} is not supported")

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
