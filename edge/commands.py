"""Cloud → site commands: one table (:data:`ROUTES`, command body type → how it is carried out).

A site command (auth list, power limit, resend) is applied in the store transaction that queues
its result. A charger command is sent to the charger first, outside any store transaction (the
charger may take seconds), then its result is stored; a redelivered charger command is answered
again from the record, not sent again. The body of a command is parsed once.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from pydantic import BaseModel

from edge.chargerlink import CallAnswer, ChargerCallError, ChargerCallRefused
from edge.metrics import COMMANDS, RESEND_GONE, RESENT
from edge.powerlimit import PowerControl, keep_power_limit
from edge.store import Store, StoreTransaction
from mqtt.envelope import Command, CommandResult, parse_body
from mqtt.payloads import (
    COMMAND_BODIES,
    AcceptCharger,
    AuthListUpdate,
    CancelReservation,
    ChangeAvailability,
    ClearChargingProfile,
    CommandStatus,
    RemoteStart,
    RemoteStop,
    Resend,
    Reserve,
    Reset,
    SetChargingProfile,
    SetPowerLimit,
    SiteResent,
    UnlockConnector,
)

log = structlog.get_logger("edge.site")  # the site's log, as before the split of edge.site


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    status: CommandStatus
    detail: str | None = None
    data: Mapping[str, Any] | None = None


class CommandSite(Protocol):
    """What a cloud command reaches of the site (implemented by :class:`edge.site.Site`)."""

    store: Store
    site_id: str
    call_timeout: float
    power: PowerControl | None

    def now(self) -> datetime: ...

    async def accept_charger(self, charger_id: str) -> bool: ...

    async def call_charger(self, charger_id: str, action: str, payload: dict[str, Any], *, origin: str,
                           answer_within: float | None = None) -> CallAnswer: ...


SiteApply = Callable[["Commands", StoreTransaction, Command, Any], Awaitable[CommandOutcome]]
ChargerRun = Callable[["Commands", Any, float], Awaitable[CommandOutcome]]


@dataclass(frozen=True, slots=True)
class Route:
    """How the site carries out one command body type: ``apply`` it to its state in the transaction that
    queues the result (a site command), or ``run`` it at a charger (a charger command)."""

    apply: SiteApply | None = None
    committed: Callable[[Commands, CommandOutcome], None] | None = None
    """Told of a site command's outcome once it is committed."""
    run: ChargerRun | None = None
    action: str | None = None
    """The OCPP 1.6 CALL that carries out a charger command, with ``payload`` its camelCase payload."""
    payload: Callable[[Any], dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if (self.apply is None) == (self.run is None):
            raise ValueError("a command route either applies a site command or runs a charger command")

    @classmethod
    def call(cls, action: str, payload: Callable[[Any], dict[str, Any]]) -> Route:
        return cls(run=Commands.send_call, action=action, payload=payload)


class Commands:
    """The site's handling of cloud commands (:meth:`edge.site.Site.handle_command`)."""

    def __init__(self, site: CommandSite) -> None:
        self.site = site

    async def handle(self, command: Command) -> CommandStatus:
        """Apply a cloud command and queue its result, in one transaction (a charger command: see the module)."""
        body = parse_body(command.type, command.body, COMMAND_BODIES)  # the one parse of the body here
        route = ROUTES.get(type(body), UNSUPPORTED)
        refused = self._refused(command)
        if refused is None and route.run is not None:
            return await self._run_at_charger(command, route.run, body)
        async with self.site.store.transaction() as tx:
            if refused is not None:
                outcome = refused
            else:
                assert route.apply is not None  # a route has apply or run (Route.__post_init__)
                outcome = await route.apply(self, tx, command, body)
            await tx.emit(_result(command, outcome))
        if refused is None and route.committed is not None:
            route.committed(self, outcome)
        self._handled(command, outcome)
        return outcome.status

    def _refused(self, command: Command) -> CommandOutcome | None:
        if command.site_id != self.site.site_id:
            return CommandOutcome(CommandStatus.REJECTED, f"command is for site {command.site_id!r}")
        if command.expired(self.site.now()):
            return CommandOutcome(CommandStatus.EXPIRED, f"expired at {command.expires_at.isoformat()}")
        return None

    async def _run_at_charger(self, command: Command, run: ChargerRun, body: Any) -> CommandStatus:
        earlier = await self._earlier_status(command.id)
        if earlier is not None:
            outcome = CommandOutcome(CommandStatus(earlier), "already handled; not sent to the charger again")
        else:
            # The charger's answer is awaited only until the command expires: the cloud stops waiting then.
            left = (command.expires_at - self.site.now()).total_seconds()
            outcome = await run(self, body, max(0.1, min(self.site.call_timeout, left)))
        async with self.site.store.transaction() as tx:
            await tx.mark_command_handled(command.id, str(outcome.status), self.site.now())
            await tx.emit(_result(command, outcome))
        self._handled(command, outcome)
        return outcome.status

    def _handled(self, command: Command, outcome: CommandOutcome) -> None:
        COMMANDS.labels(status=str(outcome.status)).inc()
        log.info("command.handled", command_id=str(command.id), command_type=command.type,
                 status=str(outcome.status), detail=outcome.detail)

    async def _earlier_status(self, command_id: uuid.UUID) -> str | None:
        async with self.site.store.transaction() as tx:
            return await tx.handled_command(command_id)

    async def answer(self, command_id: uuid.UUID, command_type: str, status: CommandStatus, detail: str) -> None:
        """Queue a result for a command that could not be handled (malformed, or it failed)."""
        async with self.site.store.transaction() as tx:
            await tx.emit(CommandResult(command_id=command_id, command_type=command_type, status=status,
                                        detail=detail[:1000]))
        COMMANDS.labels(status=str(status)).inc()

    # --- charger commands -------------------------------------------------------------------

    async def send_call(self, body: Any, answer_within: float) -> CommandOutcome:
        """Send the CALL of a charger command (:func:`ocpp_request`) and read the charger's answer."""
        action, payload = ocpp_request(body)
        try:
            answer = await self.site.call_charger(body.charger_id, action, payload, origin="cloud",
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

    async def accept_charger(self, body: AcceptCharger, answer_within: float) -> CommandOutcome:
        try:
            triggered = await self.site.accept_charger(body.charger_id)
        except LookupError as exc:
            return CommandOutcome(CommandStatus.REJECTED, str(exc))
        return CommandOutcome(CommandStatus.ACCEPTED, "charger accepted", {"boot_triggered": triggered})

    # --- site commands ----------------------------------------------------------------------

    async def apply_authlist(self, tx: StoreTransaction, command: Command, update: AuthListUpdate) -> CommandOutcome:
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

    async def resend(self, tx: StoreTransaction, command: Command, body: Resend) -> CommandOutcome:
        """Queue again the kept envelopes of a range the cloud missed; say what is gone for good."""
        store = self.site.store
        answer: dict[str, Any] = {"command_id": str(command.id), "store_id": body.store_id,
                                  "category": body.category, "first_seq": body.first_seq, "last_seq": body.last_seq}
        if body.store_id != store.store_id:
            await tx.emit(SiteResent(**answer, resent=0, unknown_store=True))
            log.warning("uplink.resend_unknown_store", store_id=body.store_id, ours=store.store_id)
            return CommandOutcome(CommandStatus.REJECTED, f"this site's store is {store.store_id}, "
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

    async def set_power_limit(self, tx: StoreTransaction, command: Command, body: SetPowerLimit) -> CommandOutcome:
        power = self.site.power
        if power is None:
            return CommandOutcome(CommandStatus.REJECTED, "this site has no load management ([power] table)")
        amps = power.amps(limit_a=body.limit_a, limit_w=body.limit_w)
        await keep_power_limit(tx, power, amps, origin=f"cloud command {command.id}", now=self.site.now())
        return CommandOutcome(CommandStatus.ACCEPTED, f"site limit set to {amps:g} A per phase", {"limit_a": amps})

    def power_limit_kept(self, outcome: CommandOutcome) -> None:
        if outcome.status == CommandStatus.ACCEPTED and self.site.power is not None:
            self.site.power.set_limit(float((outcome.data or {})["limit_a"]))  # stored with the result: now applied


def _result(command: Command, outcome: CommandOutcome) -> CommandResult:
    return CommandResult(command_id=command.id, command_type=command.type, status=outcome.status,
                         detail=outcome.detail, data=dict(outcome.data or {}))


async def _unsupported(commands: Commands, tx: StoreTransaction, command: Command, body: Any) -> CommandOutcome:
    return CommandOutcome(CommandStatus.REJECTED, f"command type {command.type!r} is not supported")


UNSUPPORTED = Route(apply=_unsupported)
"""The route of a body type missing from :data:`ROUTES` (none: a test checks every command type has one)."""


# --- the OCPP requests of charger commands ----------------------------------------------------


def _remote_start(body: RemoteStart) -> dict[str, Any]:
    payload: dict[str, Any] = {"idTag": body.id_tag}
    if body.connector_id is not None:
        payload["connectorId"] = body.connector_id
    if body.charging_profile is not None:
        payload["chargingProfile"] = body.charging_profile
    return payload


def _reserve(body: Reserve) -> dict[str, Any]:
    payload = {"connectorId": body.connector_id, "expiryDate": _ocpp_time(body.expiry_date),
               "idTag": body.id_tag, "reservationId": body.reservation_id}
    if body.parent_id_tag:
        payload["parentIdTag"] = body.parent_id_tag
    return payload


def _clear_charging_profile(body: ClearChargingProfile) -> dict[str, Any]:
    criteria = {"id": body.profile_id, "connectorId": body.connector_id,
                "chargingProfilePurpose": body.purpose, "stackLevel": body.stack_level}
    return {k: v for k, v in criteria.items() if v is not None}


def _ocpp_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ROUTES: dict[type[BaseModel], Route] = {
    AuthListUpdate: Route(apply=Commands.apply_authlist),
    Resend: Route(apply=Commands.resend),
    SetPowerLimit: Route(apply=Commands.set_power_limit, committed=Commands.power_limit_kept),
    AcceptCharger: Route(run=Commands.accept_charger),
    RemoteStart: Route.call("RemoteStartTransaction", _remote_start),
    RemoteStop: Route.call("RemoteStopTransaction", lambda body: {"transactionId": body.transaction_id}),
    Reserve: Route.call("ReserveNow", _reserve),
    CancelReservation: Route.call("CancelReservation", lambda body: {"reservationId": body.reservation_id}),
    ChangeAvailability: Route.call("ChangeAvailability",
                                   lambda body: {"connectorId": body.connector_id, "type": body.type}),
    Reset: Route.call("Reset", lambda body: {"type": body.type}),
    UnlockConnector: Route.call("UnlockConnector", lambda body: {"connectorId": body.connector_id}),
    SetChargingProfile: Route.call("SetChargingProfile", lambda body: {
        "connectorId": body.connector_id, "csChargingProfiles": body.charging_profile}),
    ClearChargingProfile: Route.call("ClearChargingProfile", _clear_charging_profile),
}
"""Every command body type of :data:`mqtt.payloads.COMMAND_BODIES` → how the site carries it out."""


def ocpp_request(body: Any) -> tuple[str, dict[str, Any]]:
    """The OCPP 1.6 CALL (action, camelCase payload) that carries out a cloud charger command."""
    route = ROUTES.get(type(body))
    if route is None or route.action is None or route.payload is None:
        raise TypeError(f"not a charger command: {type(body).__name__}")
    return route.action, route.payload(body)
