"""Issue 12 at the edge: numbers bounded where they enter, foreign stops, the open-sessions report."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.domain import read_sampled_values, transaction_begin_wh
from edge.site import Site
from edge.store import Store
from mqtt.payloads import METER_MAX_WH, SessionAnomaly, SessionsOpen

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with await Store.open(tmp_path / "edge.db") as store:
        yield Site(store, site_id="garage-1", heartbeat_interval=60, accept_unknown_chargers=True,
                   offline_accept_unknown_id_tags=True, clock=lambda: NOW)


async def bodies(site: Site, message_type: str) -> list[dict[str, Any]]:
    return [row.body for row in await site.store.outbox_batch(1000) if row.type == message_type]


@pytest.mark.parametrize("value, unit", [("99999999999999999999", "Wh"), ("1e30", "Wh"), ("1e999999999", "kWh"),
                                         (str(METER_MAX_WH + 1), "Wh"), ("1000000000", "kWh")])
def test_an_energy_register_beyond_the_contract_is_kept_out_and_flagged(value: str, unit: str) -> None:
    reading = read_sampled_values([{"value": value, "unit": unit}, {"value": "12.5", "unit": "kWh",
                                                                    "location": "Inlet"}])
    assert reading.energy_register_wh == 12_500  # the other sample still counts
    assert reading.out_of_range == (value,)


def test_the_largest_register_the_contract_carries_is_kept() -> None:
    assert read_sampled_values([{"value": str(METER_MAX_WH)}]).energy_register_wh == METER_MAX_WH
    assert read_sampled_values([{"value": "999999999.999", "unit": "kWh"}]).energy_register_wh == METER_MAX_WH


@pytest.mark.parametrize("measurand, value", [("Power.Active.Import", "1e30"), ("Power.Active.Import", "-1e999999999"),
                                              ("Current.Import", "1e12")])
def test_absurd_power_and_current_are_kept_out_and_flagged(measurand: str, value: str) -> None:
    reading = read_sampled_values([{"value": value, "measurand": measurand}])
    assert (reading.power_w, reading.current_a, reading.out_of_range) == (None, None, (value,))


def test_a_transaction_begin_beyond_the_contract_is_not_taken() -> None:
    data = [{"sampled_value": [{"value": "1e30", "context": "Transaction.Begin"}]}]
    assert transaction_begin_wh(data) is None


async def test_meter_values_out_of_range_are_answered_relayed_as_one_anomaly_and_never_as_energy(site: Site) -> None:
    relayed = await site.meter_values("CP1", connector_id=1, transaction_id=3, meter_value=[
        {"timestamp": "2026-06-01T11:59:00Z", "sampled_value": [{"value": "99999999999999999999"}]},
        {"timestamp": "2026-06-01T11:59:30Z", "sampled_value": [{"value": "1e30"}, {"value": "4200"}]}])
    assert relayed == 2  # the second element's good sample, and the anomaly
    assert [m["energy_register_wh"] for m in await bodies(site, "session.meter")] == [4_200]
    [anomaly] = [SessionAnomaly.model_validate(b) for b in await bodies(site, "session.anomaly")]
    assert (anomaly.kind, anomaly.charger_id, anomaly.transaction_id, anomaly.value) == (
        "meter_out_of_range", "CP1", 3, "99999999999999999999")


async def test_a_stop_from_another_charger_is_answered_kept_once_and_never_ends_the_transaction(site: Site) -> None:
    started = await site.start_transaction("CP-A", connector_id=1, id_tag="T", meter_start=0,
                                           timestamp="2026-06-01T11:00:00Z")
    for _ in range(2):  # and its retry
        await site.stop_transaction("CP-B", transaction_id=started.transaction_id, meter_stop=1,
                                    timestamp="2026-06-01T11:30:00Z")
    record = await site.store.get_transaction(started.transaction_id)
    assert record is not None and record.active
    assert await bodies(site, "session.stopped") == []
    [anomaly] = [SessionAnomaly.model_validate(b) for b in await bodies(site, "session.anomaly")]
    assert (anomaly.kind, anomaly.charger_id, anomaly.session_charger_id, anomaly.meter_wh) == (
        "foreign_stop", "CP-B", "CP-A", 1)
    await site.stop_transaction("CP-A", transaction_id=started.transaction_id, meter_stop=20_000,
                                timestamp="2026-06-01T12:00:00Z")
    [stopped] = await bodies(site, "session.stopped")
    assert (stopped["charger_id"], stopped["energy_wh"]) == ("CP-A", 20_000)


async def test_the_report_lists_open_transactions_and_the_recently_ended_with_their_figures(site: Site) -> None:
    one = await site.start_transaction("CP1", connector_id=1, id_tag="T1", meter_start=1_000,
                                       timestamp="2026-06-01T10:00:00Z")
    two = await site.start_transaction("CP2", connector_id=2, id_tag="T2", meter_start=0,
                                       timestamp="2026-06-01T10:05:00Z")
    await site.stop_transaction("CP1", transaction_id=one.transaction_id, meter_stop=8_000,
                                timestamp="2026-06-01T11:00:00Z", reason="EVDisconnected")
    old = await site.start_transaction("CP3", connector_id=1, id_tag="T3", meter_start=0,
                                       timestamp="2026-05-30T10:00:00Z")
    await site.stop_transaction("CP3", transaction_id=old.transaction_id, meter_stop=5,
                                timestamp="2026-05-30T11:00:00Z")  # more than a day ago: not in the report
    report = await site.report_sessions()
    assert [(t.charger_id, t.connector_id, t.transaction_id) for t in report.open] == [("CP2", 2, two.transaction_id)]
    assert [(t.charger_id, t.transaction_id, t.energy_wh, t.reason) for t in report.ended] == [
        ("CP1", one.transaction_id, 7_000, "EVDisconnected")]
    assert report.ended[0].stopped_at == datetime(2026, 6, 1, 11, 0, tzinfo=UTC)
    assert report.last_transaction_id == old.transaction_id
    [queued] = await bodies(site, "session.open")
    assert SessionsOpen.model_validate(queued) == report
    assert report.at - NOW == timedelta(0)
