"""Authorization and sessions: the rules the site applies to a charger's Authorize, StartTransaction,
MeterValues and StopTransaction (OCPP-NOTES "Transactions"), each in one store transaction.

The OCPP handlers reach them through :class:`edge.site.Site`, which keeps the method names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from edge.domain import (
    AuthDecision,
    ChargerTime,
    authorize,
    billable_energy_wh,
    charger_time,
    meter_wh,
    read_sampled_values,
    stop_time,
    transaction_begin_wh,
)
from edge.store import Store, StoreTransaction, TransactionRecord
from mqtt.payloads import (
    METER_MAX_WH,
    IdTagStatus,
    SessionAnomaly,
    SessionMeter,
    SessionStarted,
    SessionStopped,
)

log = structlog.get_logger("edge.site")  # the site's log, as before the split of edge.site

DEFAULT_STOP_REASON = "Local"
"""OCPP 1.6 §7.45: a StopTransaction without ``reason`` means Local."""


@dataclass(frozen=True, slots=True)
class StartAnswer:
    transaction_id: int
    auth: AuthDecision
    duplicate: bool


class SessionSite(Protocol):
    """What the session rules reach of the site (implemented by :class:`edge.site.Site`)."""

    store: Store
    offline_accept_unknown_id_tags: bool
    cloud_online: Callable[[], bool]

    def now(self) -> datetime: ...

    def tell(self, event: str, *args: Any) -> None: ...


async def write_off(tx: StoreTransaction, charger_id: str, *, reason: str, now: datetime,
                    **which: Any) -> list[TransactionRecord]:
    """Write off the running transactions the charger forgot (README "Sessions a charger forgot")."""
    forgotten = await tx.write_off(charger_id, reason=reason, now=now, **which)
    for record in forgotten:
        log.warning("session.written_off", charger_id=charger_id, connector_id=record.connector_id,
                    transaction_id=record.id, reason=reason)
    return forgotten


class Sessions:
    """The site's authorization and session rules."""

    def __init__(self, site: SessionSite) -> None:
        self.site = site

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
        accept_unknown = self.site.offline_accept_unknown_id_tags and not self.site.cloud_online()
        return authorize(entry, now, parent=parent, in_other_transaction=bool(others), accept_unknown=accept_unknown)

    async def authorize(self, id_tag: str) -> AuthDecision:
        """Authorize.req: the idTag's status, never ConcurrentTx (see :meth:`_decide`)."""
        async with self.site.store.transaction() as tx:
            return await self._decide(tx, id_tag, self.site.now())

    async def start_transaction(self, charger_id: str, *, connector_id: int, id_tag: str, meter_start: int,
                                timestamp: str, reservation_id: int | None = None) -> StartAnswer:
        """Always answers with a transactionId (OCPP-NOTES "Transactions": a
        StartTransaction is never refused, or the charger retries it forever).

        The idTag is re-validated; a non-Accepted status tells the charger to stop. A
        repeated StartTransaction (same charger, connector, idTag, meterStart, timestamp) gets
        the transactionId it got the first time, without a second session.
        """
        now = self.site.now()
        started = charger_time(timestamp, now)
        async with self.site.store.transaction() as tx:
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
                await write_off(tx, charger_id, reason="new_transaction", now=now, connector_id=connector_id,
                                      except_id=transaction_id)
                await tx.emit(SessionStarted(
                    charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id, id_tag=id_tag,
                    id_tag_status=decision.status, meter_start_wh=meter_wh(meter_start), started_at=started.at,
                    reservation_id=reservation_id, clock_suspect=started.suspect,
                ))
        log.info("session.started", charger_id=charger_id, connector_id=connector_id, transaction_id=transaction_id,
                 id_tag_status=str(decision.status), clock_suspect=started.suspect)
        if connector_id >= 1:
            self.site.tell("session_started", charger_id, connector_id, transaction_id, started.at)
        return StartAnswer(transaction_id, decision, duplicate=False)

    async def meter_values(self, charger_id: str, *, connector_id: int, transaction_id: int | None,
                           meter_value: Sequence[Mapping[str, Any]]) -> int:
        """Relay each MeterValue element that has energy or power as one SessionMeter.

        Returns how many were relayed; unreadable samples are skipped, never refused.
        """
        now = self.site.now()
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
        async with self.site.store.writes() as tx:  # group commit
            await tx.touch_charger(charger_id, now)
            for body in bodies:
                await tx.emit(body)
        if draw is not None and connector_id >= 1:
            self.site.tell("meter_sample", charger_id, connector_id, transaction_id, *draw)
        return len(bodies)

    async def stop_transaction(self, charger_id: str, *, transaction_id: int, meter_stop: int, timestamp: str,
                               id_tag: str | None = None, reason: str | None = None,
                               transaction_data: Sequence[Mapping[str, Any]] | None = None) -> AuthDecision | None:
        """Always answered (OCPP-NOTES "Transactions"). A stop of an unknown transaction or of -1 (the
        charger never got a transactionId) is kept and relayed as reconciled; a repeated stop is
        relayed once. Energy is never negative; a stop never precedes its start.
        """
        now = self.site.now()
        reported = charger_time(timestamp, now)
        stop_wh = meter_wh(meter_stop)
        if reason is None:
            reason = DEFAULT_STOP_REASON
        async with self.site.store.transaction() as tx:
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
            self.site.tell("session_stopped", charger_id, record.connector_id, record.id, stopped_at)
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
