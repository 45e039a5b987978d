"""Issue 12 on the use cases: sessions keyed by store instance and charger, anomalies, reconciliation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cloud.contracts.charging import ChargingAnomaly, ChargingCompleted
from cloud.contracts.errors import NotFound
from cloud.contracts.identity import Forbidden
from mqtt import EndedTransaction, OpenTransaction, SessionAnomaly, SessionMeter, SessionsOpen
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.charging.conftest import OWNER, T0, Charging, registered, started, stopped

OLD, NEW = "a" * 32, "b" * 32


@pytest.fixture
async def driver(charging: Charging) -> Charging:
    await charging.service.on_vehicle_registered(registered("veh-1", "TAG1", "TAG2"))
    return charging


def report(*open_: tuple[str, int], ended: list[EndedTransaction] | None = None, last: int = 100) -> SessionsOpen:
    return SessionsOpen(open=[OpenTransaction(charger_id=c, connector_id=1, transaction_id=t) for c, t in open_],
                        ended=ended or [], last_transaction_id=last, at=T0 + timedelta(hours=2))


async def test_a_replaced_edge_store_makes_new_sessions_that_never_touch_the_old_ones(driver: Charging) -> None:
    await driver.receive(started(id_tag="TAG1"), store_id=OLD)
    await driver.receive(stopped(energy=7_500), store_id=OLD)
    await driver.receive(started(transaction_id=8, id_tag="TAG1"), store_id=OLD)  # never stopped
    # the edge's database is replaced: transaction ids start over, the same ids come again
    await driver.receive(started(id_tag="TAG2", meter_start=0), store_id=NEW)
    await driver.receive(started(transaction_id=8, id_tag="TAG2", meter_start=0), store_id=NEW)
    await driver.receive(stopped(transaction_id=8, energy=1_200), store_id=NEW)
    history = (await driver.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions
    assert sorted((s.store_id, s.transaction_id, s.id_tag, s.energy_wh) for s in history) == [
        (OLD, 7, "TAG1", 7_500), (NEW, 8, "TAG2", 1_200)]
    running = (await driver.service.status(OWNER, "veh-1")).sessions
    assert sorted((s.store_id, s.transaction_id, s.id_tag) for s in running) == [(OLD, 8, "TAG1"), (NEW, 7, "TAG2")]
    assert len({s.session_id for s in [*history, *running]}) == 4


async def test_a_stop_from_another_charger_never_ends_the_session_and_is_kept_as_an_anomaly(driver: Charging) -> None:
    await driver.receive(started(charger_id="CP-A"), store_id=OLD)
    await driver.receive(SessionAnomaly(kind="foreign_stop", charger_id="CP-B", transaction_id=7,
                                        session_charger_id="CP-A", meter_wh=1, detail="StopTransaction from CP-B",
                                        observed_at=T0), store_id=OLD)
    await driver.receive(stopped(charger_id="CP-A", energy=20_000), store_id=OLD)
    [session] = (await driver.service.history(OWNER, "veh-1", limit=10, offset=0)).sessions
    assert (session.charger_id, session.energy_wh) == ("CP-A", 20_000)
    [anomaly] = [e for e in driver.units.events if isinstance(e, ChargingAnomaly)]
    assert (anomaly.kind, anomaly.charger_id, anomaly.transaction_id, anomaly.session_id) == (
        "foreign_stop", "CP-B", 7, session.session_id)
    seen = await driver.service.anomalies(PRINCIPALS["admin"], "site-a", limit=10, offset=0)
    assert [a.anomaly_id for a in seen.anomalies] == [anomaly.anomaly_id]


async def test_anomalies_are_for_the_sites_operators_and_admins(driver: Charging) -> None:
    await driver.receive(SessionAnomaly(kind="foreign_stop", charger_id="CP-B", transaction_id=7, detail="x",
                                        observed_at=T0), site_id="site-1")
    operator = PRINCIPALS["operator_1"]  # of site-1
    assert len((await driver.service.anomalies(operator, "site-1", limit=10, offset=0)).anomalies) == 1
    assert len((await driver.service.anomalies(operator, None, limit=10, offset=0)).anomalies) == 1
    assert (await driver.service.anomalies(PRINCIPALS["operator_2"], None, limit=10, offset=0)).anomalies == []
    with pytest.raises(NotFound):
        await driver.service.anomalies(PRINCIPALS["operator_2"], "site-1", limit=10, offset=0)
    for who in ("driver_a", "technician_1"):
        with pytest.raises(Forbidden):
            await driver.service.anomalies(PRINCIPALS[who], "site-1", limit=10, offset=0)


async def test_reconciliation_closes_what_the_edge_no_longer_has_with_the_edges_figures(driver: Charging) -> None:
    await driver.receive(started(transaction_id=1, id_tag="TAG1"), store_id=NEW)  # its stop is lost
    await driver.receive(started(transaction_id=2, id_tag="TAG2"), store_id=NEW)  # still charging
    await driver.receive(started(transaction_id=3, id_tag="TAG1", charger_id="CP2"), store_id=NEW)  # lost, no figures
    await driver.receive(SessionMeter(charger_id="CP2", connector_id=1, transaction_id=3, energy_register_wh=4_000,
                                      sampled_at=T0), store_id=NEW)
    await driver.receive(started(transaction_id=9, id_tag="TAG1", charger_id="CP9"), store_id=OLD)  # another store
    ended = EndedTransaction(charger_id="CP1", transaction_id=1, meter_start_wh=1_000, meter_stop_wh=9_000,
                             energy_wh=8_000, started_at=T0, stopped_at=T0 + timedelta(minutes=50),
                             reason="EVDisconnected")
    driver.units.events.clear()
    await driver.receive(report(("CP1", 2), ended=[ended], last=3), store_id=NEW)
    await driver.receive(report(("CP1", 2), ended=[ended], last=3), store_id=NEW)  # the next report changes nothing
    completed = {e.transaction_id: e for e in driver.units.events if isinstance(e, ChargingCompleted)}
    assert sorted(completed) == [1, 3]
    assert (completed[1].energy_wh, completed[1].stopped_at, completed[1].closed_by) == (
        8_000, T0 + timedelta(minutes=50), "reconciliation")
    assert (completed[3].closed_by, completed[3].energy_wh) == ("reconciliation", 3_000)  # what it knew: 4000 - 1000
    [lost] = [e for e in driver.units.events if isinstance(e, ChargingAnomaly)]
    assert (lost.kind, lost.charger_id, lost.transaction_id) == ("session_lost", "CP2", 3)
    running = (await driver.service.status(OWNER, "veh-1")).sessions
    assert sorted((s.store_id, s.transaction_id) for s in running) == [(OLD, 9), (NEW, 2)]


async def test_a_session_newer_than_the_report_is_left_alone(driver: Charging) -> None:
    await driver.receive(started(transaction_id=5), store_id=NEW)
    await driver.receive(report(last=4), store_id=NEW)  # written before transaction 5 started
    assert [s.transaction_id for s in (await driver.service.status(OWNER, "veh-1")).sessions] == [5]
