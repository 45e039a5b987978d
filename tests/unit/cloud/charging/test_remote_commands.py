"""Remote start and stop, station commands, the chargers' state and its events, rates and cost so far:
the use cases on an in-memory repository, with a stand-in edge that answers the commands it is sent."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from cloud.charging.service import ChargingService
from cloud.charging.views import AvailabilityRequest, ResetRequest, StartRequest, StopRequest, UnlockRequest
from cloud.contracts import Received
from cloud.contracts.charging import (
    ChargerFaulted,
    ChargerOffline,
    ChargerOnline,
    ChargingCompleted,
    ChargingFailed,
    EnergyFinished,
)
from cloud.contracts.errors import Conflict, DomainError, NotFound
from cloud.contracts.payments import TariffChanged
from mqtt import (
    ChargerCall,
    ChargerConnection,
    ChargerStatus,
    Command,
    CommandResult,
    CommandStatus,
    Envelope,
    IdTagStatus,
    InventoryCharger,
    SessionMeter,
    SessionStarted,
    SessionStopped,
    SiteInventory,
    parse_body,
)
from tests.support.events import received
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.charging.conftest import OWNER, Charging, registered

NOW = datetime.now(UTC).replace(microsecond=0)


class FakeEdge:
    """Answers every command as a site's edge would: the charger's answer (``answer``: Accepted or Rejected),
    or nothing at all (``silent``); an accepted remote start is followed by its StartTransaction."""

    def __init__(self, charging: Charging) -> None:
        self.charging = charging
        self.commands: list[Command] = []
        self.answer = "Accepted"
        self.silent = False
        self.transaction_id = 100
        self._tasks: set[asyncio.Task[None]] = set()

    async def send_command(self, command: Command) -> None:
        self.commands.append(command)
        if not self.silent:
            task = asyncio.create_task(self._answer(command))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, command: Command) -> None:
        await asyncio.sleep(0.01)
        if self.answer in ("timeout", "expired"):  # the edge answers for a charger that did not
            await self.charging.receive(CommandResult(
                command_id=command.id, command_type=command.type,
                status=CommandStatus.FAILED if self.answer == "timeout" else CommandStatus.EXPIRED,
                detail=f"charger {command.body['charger_id']!r} did not answer within 0.4 s"), site_id=command.site_id)
            return
        status = CommandStatus.ACCEPTED if self.answer in ("Accepted", "Unlocked") else CommandStatus.REJECTED
        await self.charging.receive(CommandResult(
            command_id=command.id, command_type=command.type, status=status, detail=f"charger answered {self.answer}",
            data={"action": "x", "response": {"kind": "result", "payload": {"status": self.answer}}}),
            site_id=command.site_id)
        body: Any = parse_body(command.type, command.body)
        if command.type == "charger.remote_start" and status == CommandStatus.ACCEPTED:
            self.transaction_id += 1
            await self.charging.receive(SessionStarted(
                charger_id=body.charger_id, connector_id=body.connector_id or 1, transaction_id=self.transaction_id,
                id_tag=body.id_tag, id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=1_000, started_at=NOW),
                site_id=command.site_id)


@pytest.fixture
async def site(charging: Charging) -> tuple[Charging, FakeEdge]:
    """site-1 with charger CP1 (22 kW, two connectors, online, Available) and CP2 (150 kW, offline);
    vehicle veh-1 of driver A with TAG1."""
    edge = FakeEdge(charging)
    charging.service = ChargingService(charging.units, charging.cache, sender=edge, answer_within=0.5,
                                       command_ttl=0.4, session_wait=0.5)
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1"))
    await charging.receive(SiteInventory(bays=[], chargers=[
        InventoryCharger(charger_id="CP1", connectors=2, max_power_w=22_000),
        InventoryCharger(charger_id="CP2", connectors=1, max_power_w=150_000)]), site_id="site-1")
    await charging.receive(ChargerConnection(charger_id="CP1", online=True, at=NOW), site_id="site-1")
    for connector in (0, 1, 2):
        await charging.receive(status("CP1", connector, "Available"), site_id="site-1")
    return charging, edge


def status(charger: str, connector: int, value: str, error: str = "NoError", at: datetime = NOW) -> ChargerStatus:
    return ChargerStatus(charger_id=charger, connector_id=connector, status=value, error_code=error, observed_at=at)


def start(**changes: Any) -> StartRequest:
    return StartRequest(**{"vehicle_id": "veh-1", "site_id": "site-1", "charger_id": "CP1", **changes})


def events_of(charging: Charging, kind: type) -> list[Any]:
    return [e for e in charging.units.events if isinstance(e, kind)]


async def test_a_remote_start_answers_accepted_with_the_session_the_charger_opened(
        site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    answer = await charging.service.remote_start(OWNER, start(connector_id=2))
    assert (answer.status, answer.connector_id) == ("Accepted", 2)
    [command] = edge.commands
    assert (command.type, command.body["id_tag"], command.body["connector_id"]) == ("charger.remote_start", "TAG1", 2)
    assert command.expires_at - command.issued_at == timedelta(seconds=0.4)  # expires before the cloud gives up
    status_now = await charging.service.status(OWNER, "veh-1")
    assert [s.session_id for s in status_now.sessions] == [answer.session_id]
    assert status_now.sessions[0].power_class == "ac"


async def test_a_rejected_remote_start_is_a_clear_answer_and_charging_failed(site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    edge.answer = "Rejected"
    answer = await charging.service.remote_start(OWNER, start())
    assert (answer.status, answer.session_id, answer.detail) == ("Rejected", None, "charger answered Rejected")
    [failed] = events_of(charging, ChargingFailed)
    assert (failed.reason, failed.vehicle_id, failed.owner_id, failed.charger_id) == (
        "remote_start_rejected", "veh-1", OWNER.subject, "CP1")


async def test_no_answer_is_a_504_within_the_bound_and_charging_failed(site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    edge.silent = True
    began = time.monotonic()
    with pytest.raises(DomainError) as refused:
        await charging.service.remote_start(OWNER, start())
    assert (refused.value.status, refused.value.code) == (504, "no_answer")
    assert "expired at the site" in refused.value.detail
    assert time.monotonic() - began < 1.5
    [failed] = events_of(charging, ChargingFailed)
    assert failed.reason == "remote_start_timeout"
    # the edge's late answer changes nothing: the driver was told it failed
    await edge._answer(edge.commands[0])
    assert len(events_of(charging, ChargingFailed)) == 1


async def test_a_remote_start_is_refused_when_offline_busy_or_charging_already(
        site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    with pytest.raises(Conflict) as offline:
        await charging.service.remote_start(OWNER, start(charger_id="CP2"))
    assert offline.value.code == "charger_offline"
    await charging.receive(status("CP1", 1, "Faulted", "GroundFailure"), site_id="site-1")
    with pytest.raises(Conflict) as busy:
        await charging.service.remote_start(OWNER, start(connector_id=1))
    assert busy.value.code == "connector_busy"
    await charging.service.remote_start(OWNER, start(connector_id=2))
    with pytest.raises(Conflict) as again:
        await charging.service.remote_start(OWNER, start(connector_id=2))
    assert again.value.code == "vehicle_charging"
    assert len(edge.commands) == 1


async def test_another_drivers_vehicle_or_an_unknown_charger_is_not_found(site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    for who, request, code in ((PRINCIPALS["driver_b"], start(), "unknown_vehicle"),
                               (PRINCIPALS["operator_1"], start(), "unknown_vehicle"),
                               (OWNER, start(charger_id="CP9"), "unknown_charger"),
                               (OWNER, start(site_id="site-2"), "unknown_charger"),
                               (OWNER, start(connector_id=3), "unknown_connector")):
        with pytest.raises(NotFound) as refused:
            await charging.service.remote_start(who, request)
        assert refused.value.code == code
    assert edge.commands == []


async def test_a_remote_stop_by_session_or_vehicle_sends_remote_stop_transaction(
        site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    started = await charging.service.remote_start(OWNER, start())
    answer = await charging.service.remote_stop(OWNER, StopRequest(vehicle_id="veh-1"))
    assert (answer.status, answer.session_id) == ("Accepted", started.session_id)
    assert edge.commands[-1].type == "charger.remote_stop"
    assert edge.commands[-1].body["transaction_id"] == 101
    with pytest.raises(NotFound):
        await charging.service.remote_stop(PRINCIPALS["driver_b"], StopRequest(session_id=started.session_id))
    operator = await charging.service.remote_stop(PRINCIPALS["operator_1"], StopRequest(session_id=started.session_id))
    assert operator.status == "Accepted"
    with pytest.raises(NotFound):
        await charging.service.remote_stop(OWNER, StopRequest(session_id="cs_nope"))
    with pytest.raises(DomainError) as both:
        await charging.service.remote_stop(OWNER, StopRequest(session_id="a", vehicle_id="veh-1"))
    assert both.value.status == 422


async def test_stopping_a_vehicle_that_is_not_charging_is_a_conflict(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    with pytest.raises(Conflict) as refused:
        await charging.service.remote_stop(OWNER, StopRequest(vehicle_id="veh-1"))
    assert refused.value.code == "not_charging"


async def test_unlock_reset_and_availability_come_back_with_the_chargers_answer(
        site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    edge.answer = "Unlocked"
    unlocked = await charging.service.unlock(PRINCIPALS["technician_1"], "site-1", "CP1", UnlockRequest(connector_id=1))
    assert (unlocked.outcome, unlocked.charger_status) == ("accepted", "Unlocked")
    edge.answer = "Accepted"
    reset = await charging.service.reset(PRINCIPALS["operator_1"], "site-1", "CP1", ResetRequest(type="Hard"))
    assert (reset.outcome, reset.charger_status) == ("accepted", "Accepted")
    edge.answer = "Rejected"
    availability = await charging.service.change_availability(
        PRINCIPALS["admin"], "site-1", "CP1", AvailabilityRequest(connector_id=0, type="Inoperative"))
    assert (availability.outcome, availability.charger_status) == ("rejected", "Rejected")
    assert [c.type for c in edge.commands] == ["charger.unlock", "charger.reset", "charger.change_availability"]


async def test_a_driver_or_another_sites_staff_commanding_a_station_gets_404(site: tuple[Charging, FakeEdge]) -> None:
    charging, edge = site
    for who in ("driver_a", "operator_2"):
        with pytest.raises(NotFound) as refused:
            await charging.service.unlock(PRINCIPALS[who], "site-1", "CP1", UnlockRequest(connector_id=1))
        assert refused.value.code == "unknown_charger"
    with pytest.raises(Conflict):
        await charging.service.reset(PRINCIPALS["operator_1"], "site-1", "CP2", ResetRequest())
    assert edge.commands == []


async def test_stations_show_live_status_power_class_and_the_session_to_the_sites_staff(
        site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    started = await charging.service.remote_start(OWNER, start(connector_id=1))
    await charging.receive(status("CP1", 1, "Charging"), site_id="site-1")
    staff = await charging.service.stations(PRINCIPALS["operator_1"], "site-1")
    assert [(s.charger_id, s.online, s.status, s.power_class, s.max_power_w) for s in staff.stations] == [
        ("CP1", True, "Available", "ac", 22_000), ("CP2", False, "Offline", "dc", 150_000)]
    assert [(c.connector_id, c.status, c.session_id) for c in staff.stations[0].connectors] == [
        (1, "Charging", started.session_id), (2, "Available", None)]
    driver = await charging.service.stations(PRINCIPALS["driver_b"], "site-1")
    assert [c.session_id for c in driver.stations[0].connectors] == [None, None]
    for who, site_id in (("operator_2", "site-1"), ("admin", "site-9")):
        with pytest.raises(NotFound):
            await charging.service.stations(PRINCIPALS[who], site_id)


async def test_the_chargers_link_and_faults_are_published_once_per_change(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    started = await charging.service.remote_start(OWNER, start(connector_id=1))
    await charging.receive(ChargerConnection(charger_id="CP1", online=False, at=NOW), site_id="site-1")
    await charging.receive(ChargerConnection(charger_id="CP1", online=False, at=NOW), site_id="site-1")
    await charging.receive(ChargerConnection(charger_id="CP1", online=True, at=NOW), site_id="site-1")
    assert [type(e) for e in charging.units.events if isinstance(e, ChargerOffline | ChargerOnline)] == [
        ChargerOnline, ChargerOffline, ChargerOnline]
    await charging.receive(status("CP1", 1, "Faulted", "GroundFailure", NOW + timedelta(seconds=1)), site_id="site-1")
    await charging.receive(status("CP1", 1, "Faulted", "GroundFailure", NOW + timedelta(seconds=2)), site_id="site-1")
    [faulted] = events_of(charging, ChargerFaulted)
    assert (faulted.connector_id, faulted.error_code) == (1, "GroundFailure")
    [failed] = events_of(charging, ChargingFailed)
    assert (failed.reason, failed.session_id, failed.vehicle_id) == ("charger_faulted", started.session_id, "veh-1")


async def test_suspended_ev_publishes_energy_finished_and_completed_carries_it(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    started = await charging.service.remote_start(OWNER, start(connector_id=1))
    at = NOW + timedelta(minutes=30)
    await charging.receive(status("CP1", 1, "SuspendedEV", at=at), site_id="site-1")
    [finished] = events_of(charging, EnergyFinished)
    assert (finished.session_id, finished.trigger, finished.energy_finished_at, finished.vehicle_id) == (
        started.session_id, "suspended_ev", at, "veh-1")
    await charging.receive(SessionStopped(charger_id="CP1", transaction_id=101, meter_start_wh=1_000,
                                          meter_stop_wh=9_000, energy_wh=8_000, stopped_at=at + timedelta(minutes=20),
                                          reason="EVDisconnected"), site_id="site-1")
    [completed] = events_of(charging, ChargingCompleted)
    assert (completed.VERSION, completed.stop_reason, completed.duration_s, completed.meter_start_wh,
            completed.meter_stop_wh, completed.energy_finished_at, completed.power_class) == (
        "1.3", "EVDisconnected", 50 * 60, 1_000, 9_000, at, "ac")
    assert events_of(charging, ChargingFailed) == []
    assert charging.repo.history[started.session_id][0].energy_wh == 8_000


async def test_a_car_the_load_manager_holds_at_0_a_is_not_energy_finished(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    charging.service.low_power_seconds = 60
    await charging.service.remote_start(OWNER, start(connector_id=1))
    await charging.receive(ChargerCall(
        charger_id="CP1", action="SetChargingProfile", origin="load-management",
        request={"connectorId": 1, "csChargingProfiles": {"chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0}]}}},
        outcome="result", response={"kind": "result", "payload": {"status": "Accepted"}}, sent_at=NOW),
        site_id="site-1")
    for minute in range(0, 10):
        await charging.receive(SessionMeter(charger_id="CP1", connector_id=1, transaction_id=101,
                                            energy_register_wh=1_000, power_w=0.0,
                                            sampled_at=NOW + timedelta(minutes=minute)), site_id="site-1")
    assert events_of(charging, EnergyFinished) == []
    # the profile cleared: the same draw now finishes the energy after the window
    await charging.receive(ChargerCall(
        charger_id="CP1", action="ClearChargingProfile", origin="load-management", request={"id": 101},
        outcome="result", response={"kind": "result", "payload": {"status": "Accepted"}}, sent_at=NOW),
        site_id="site-1")
    for minute in range(10, 12):
        await charging.receive(SessionMeter(charger_id="CP1", connector_id=1, transaction_id=101,
                                            energy_register_wh=1_000, power_w=0.0,
                                            sampled_at=NOW + timedelta(minutes=minute)), site_id="site-1")
    [finished] = events_of(charging, EnergyFinished)
    assert (finished.trigger, finished.energy_finished_at) == ("low_power", NOW + timedelta(minutes=10))


async def test_an_abnormal_stop_is_charging_failed(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    started = await charging.service.remote_start(OWNER, start())
    await charging.receive(SessionStopped(charger_id="CP1", transaction_id=101, meter_stop_wh=2_000, energy_wh=1_000,
                                          stopped_at=NOW + timedelta(minutes=5), reason="EmergencyStop"),
                           site_id="site-1")
    [failed] = events_of(charging, ChargingFailed)
    assert (failed.reason, failed.stop_reason, failed.session_id) == ("abnormal_stop", "EmergencyStop",
                                                                      started.session_id)


def tariff_changed(version: int, energy_price: str) -> Received[TariffChanged]:
    return received(TariffChanged(site_id="site-1", currency="EUR", version=version, changed_at=NOW, tariff={
        "site_id": "site-1", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
        "elements": [{"components": [{"type": "energy", "price": energy_price, "step_size": 1}]}]}), source="payments")


async def test_cost_so_far_prices_the_energy_by_the_sites_tariff_and_rises(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    await charging.service.on_tariff_changed(tariff_changed(2, "0.40"))
    await charging.service.on_tariff_changed(tariff_changed(1, "9.99"))  # older: ignored
    await charging.service.remote_start(OWNER, start())
    costs = []
    for register in (3_000, 6_000):
        await charging.receive(SessionMeter(charger_id="CP1", connector_id=1, transaction_id=101,
                                            energy_register_wh=register, power_w=11_000.0, sampled_at=NOW),
                               site_id="site-1")
        [live] = (await charging.service.status(OWNER, "veh-1")).sessions
        costs.append((live.energy_wh, live.power_w, live.cost_so_far, live.currency))
    # 2 kWh x 0.40 = 0.80 net, 0.95 gross (19 %: 0.152 rounded half up); 5 kWh: 2.00 net, 2.38 gross
    assert costs == [(2_000, 11_000.0, Decimal("0.95"), "EUR"), (5_000, 11_000.0, Decimal("2.38"), "EUR")]


async def test_rates_show_what_a_driver_pays_per_bay_type_and_power_class(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    with pytest.raises(NotFound):
        await charging.service.rates(OWNER, "site-1")
    await charging.service.on_tariff_changed(tariff_changed(1, "0.40"))
    rates = await charging.service.rates(PRINCIPALS["driver_b"], "site-1")
    assert (rates.currency, rates.version) == ("EUR", 1)
    assert [(r.bay_type, r.power_class, r.elements[0]["components"][0]["price"]) for r in rates.rates][:2] == [
        ("ev", "ac", "0.40"), ("ev", "dc", "0.40")]


async def test_a_result_of_another_services_command_is_not_ours(site: tuple[Charging, FakeEdge]) -> None:
    charging, _ = site
    before = list(charging.units.events)
    envelope = await charging.receive(CommandResult(command_id="0" * 32, command_type="site.set_power_limit",
                                                    status=CommandStatus.ACCEPTED), site_id="site-1")
    assert isinstance(envelope, Envelope)
    assert charging.units.events == before


@pytest.mark.parametrize("edge_says", ["timeout", "expired"])
async def test_a_charger_that_never_answered_is_a_504_even_when_the_edge_says_so(
        site: tuple[Charging, FakeEdge], edge_says: str) -> None:
    charging, edge = site
    edge.answer = edge_says
    with pytest.raises(DomainError) as refused:
        await charging.service.remote_start(OWNER, start())
    assert (refused.value.status, refused.value.code) == (504, "no_answer")
    assert "did not answer within 0.4 s" in refused.value.detail or edge_says == "expired"
    [failed] = events_of(charging, ChargingFailed)
    assert failed.reason == "remote_start_timeout"
    with pytest.raises(DomainError) as unlock:
        await charging.service.unlock(PRINCIPALS["operator_1"], "site-1", "CP1", UnlockRequest(connector_id=1))
    assert unlock.value.status == 504
