from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from edge.domain import (
    AuthEntry,
    ChargerTime,
    authorize,
    billable_energy_wh,
    charger_time,
    read_sampled_values,
    stop_time,
    transaction_begin_wh,
)
from mqtt.payloads import IdTagStatus

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_a_believable_charger_time_is_used_as_reported() -> None:
    at = charger_time("2025-06-01T11:59:00Z", NOW)
    assert at == ChargerTime(at=datetime(2025, 6, 1, 11, 59, tzinfo=UTC), reported="2025-06-01T11:59:00Z",
                             suspect=False)


def test_a_time_without_offset_is_taken_as_utc() -> None:
    assert charger_time("2025-06-01T11:00:00", NOW).at == datetime(2025, 6, 1, 11, tzinfo=UTC)


def test_an_offset_time_is_converted_to_utc() -> None:
    assert charger_time("2025-06-01T13:00:00+02:00", NOW).at == datetime(2025, 6, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "garbage",
                                 "2025-06-01T15:00:00Z"])
def test_an_unset_unreadable_or_future_clock_is_replaced_by_receipt_time_and_flagged(raw: str) -> None:
    assert charger_time(raw, NOW) == ChargerTime(at=NOW, reported=raw, suspect=True)


def test_a_missing_optional_time_means_now_and_is_not_suspect() -> None:
    assert charger_time(None, NOW) == ChargerTime(at=NOW, reported=None, suspect=False)


def test_a_stop_before_its_start_is_clamped_to_the_start_and_flagged() -> None:
    started = NOW
    stopped = charger_time("2025-06-01T11:00:00Z", NOW)
    assert stop_time(stopped, started) == ChargerTime(at=started, reported="2025-06-01T11:00:00Z", suspect=True)
    assert stop_time(stopped, started - timedelta(hours=2)) == stopped


@pytest.mark.parametrize(("start", "stop", "energy"), [(1000, 8500, 7500), (50_000, 100, 0), (None, 900, 0),
                                                        (5, 5, 0)])
def test_billable_energy_is_never_negative(start: int | None, stop: int, energy: int) -> None:
    assert billable_energy_wh(start, stop) == energy


def test_sampled_value_defaults_are_energy_register_in_wh() -> None:
    reading = read_sampled_values([{"value": "1234.6"}])
    assert reading.energy_register_wh == 1235
    assert reading.context == "Sample.Periodic"


def test_kwh_and_kw_are_converted() -> None:
    reading = read_sampled_values([
        {"value": "7.5", "unit": "kWh"},
        {"value": "11.04", "unit": "kW", "measurand": "Power.Active.Import"},
    ])
    assert reading.energy_register_wh == 7500
    assert reading.power_w == pytest.approx(11_040.0)


def test_outlet_whole_charger_energy_is_preferred_over_phases_and_other_locations() -> None:
    reading = read_sampled_values([
        {"value": "100", "phase": "L1"},
        {"value": "200", "location": "Inlet"},
        {"value": "300", "location": "Outlet"},
    ])
    assert reading.energy_register_wh == 300


def test_per_phase_power_is_summed_when_no_total_is_sent() -> None:
    reading = read_sampled_values([
        {"value": "1000", "measurand": "Power.Active.Import", "phase": "L1"},
        {"value": "1100", "measurand": "Power.Active.Import", "phase": "L2"},
        {"value": "1200", "measurand": "Power.Active.Import", "phase": "L3"},
        {"value": "5", "measurand": "Power.Active.Import", "phase": "N"},
    ])
    assert reading.power_w == 3300.0
    assert reading.energy_register_wh is None


@pytest.mark.parametrize("samples", [
    [{"value": "abc"}],
    [{"value": "NaN"}],
    [{"value": "-5"}],
    [{"value": "12", "format": "SignedData"}],
    [{"value": "12", "unit": "varh"}],
    [{"value": "21.5", "unit": "Celcius", "measurand": "Temperature"},
     {"value": "21.5", "unit": "Celsius", "measurand": "Temperature"}],
    ["not a mapping"],
])
def test_unreadable_or_irrelevant_samples_are_skipped_not_fatal(samples: list[object]) -> None:
    assert read_sampled_values(samples).empty  # type: ignore[arg-type]


def test_transaction_begin_meter_comes_from_transaction_data() -> None:
    data = [{"timestamp": "x", "sampled_value": [{"value": "10", "context": "Sample.Periodic"}]},
            {"timestamp": "x", "sampled_value": [{"value": "2.5", "unit": "kWh", "context": "Transaction.Begin"}]}]
    assert transaction_begin_wh(data) == 2500
    assert transaction_begin_wh(None) is None
    assert transaction_begin_wh([{"sampled_value": [{"value": "3", "context": "Transaction.End"}]}]) is None


def test_authorize_reads_the_local_list() -> None:
    def entry(status: IdTagStatus, expiry: datetime | None = None) -> AuthEntry:
        return AuthEntry(id_tag="T", status=status, expiry_date=expiry, parent_id_tag="P")

    assert authorize(None, NOW).status is IdTagStatus.INVALID
    assert authorize(entry(IdTagStatus.ACCEPTED), NOW).accepted
    assert authorize(entry(IdTagStatus.ACCEPTED, NOW + timedelta(days=1)), NOW).parent_id_tag == "P"
    assert authorize(entry(IdTagStatus.ACCEPTED, NOW), NOW).status is IdTagStatus.EXPIRED
    assert authorize(entry(IdTagStatus.BLOCKED, NOW - timedelta(days=1)), NOW).status is IdTagStatus.BLOCKED


@pytest.mark.parametrize(("own", "parent", "busy", "unknown_ok", "expected"), [
    (IdTagStatus.ACCEPTED, None, False, False, IdTagStatus.ACCEPTED),
    (IdTagStatus.ACCEPTED, IdTagStatus.BLOCKED, False, False, IdTagStatus.BLOCKED),
    (IdTagStatus.ACCEPTED, IdTagStatus.ACCEPTED, True, False, IdTagStatus.CONCURRENT_TX),
    (IdTagStatus.BLOCKED, None, True, False, IdTagStatus.BLOCKED),  # a refusal beats ConcurrentTx
    (IdTagStatus.INVALID, None, False, True, IdTagStatus.INVALID),  # the offline policy is for unknown ids only
])
def test_group_concurrency_and_offline_policy_rules(own: IdTagStatus, parent: IdTagStatus | None, busy: bool,
                                                    unknown_ok: bool, expected: IdTagStatus) -> None:
    entry = AuthEntry("T", own, parent_id_tag="G" if parent else None)
    group = AuthEntry("G", parent) if parent else None
    assert authorize(entry, NOW, parent=group, in_other_transaction=busy, accept_unknown=unknown_ok).status \
        is expected


def test_an_unknown_id_is_invalid_unless_the_offline_policy_accepts_it() -> None:
    assert authorize(None, NOW).status is IdTagStatus.INVALID
    assert authorize(None, NOW, accept_unknown=True).status is IdTagStatus.ACCEPTED


def test_an_expired_group_expires_its_members() -> None:
    group = AuthEntry("G", IdTagStatus.ACCEPTED, expiry_date=NOW - timedelta(seconds=1))
    assert authorize(AuthEntry("T", IdTagStatus.ACCEPTED, parent_id_tag="G"), NOW, parent=group).status \
        is IdTagStatus.EXPIRED
