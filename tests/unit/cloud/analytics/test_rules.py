"""Analytics rules: report ranges, periods in the site's time zone, hours split, first attempts, revenue days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from cloud.analytics import domain
from cloud.analytics.domain import InvalidField, SessionOutcome

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
BERLIN = domain.zone("Europe/Berlin")


def test_the_default_range_is_the_30_days_before_now_or_before_to() -> None:
    assert domain.report_range(None, None, None, now=NOW) == domain.Range(NOW - timedelta(days=30), NOW, "day")
    end = datetime(2026, 1, 1, tzinfo=UTC)
    assert domain.report_range(None, end, "week", now=NOW).start == end - timedelta(days=30)


@pytest.mark.parametrize("start, end, granularity, field", [
    (NOW, NOW, None, "from"),
    (NOW, NOW - timedelta(hours=1), None, "from"),
    (NOW - timedelta(days=732), NOW, None, "to"),
    (NOW - timedelta(days=800), None, None, "to"),
    (NOW.replace(tzinfo=None), None, None, "from"),
    (None, None, "year", "granularity"),
])
def test_a_bad_range_names_its_field(start: datetime | None, end: datetime | None, granularity: str | None,
                                     field: str) -> None:
    with pytest.raises(InvalidField) as refused:
        domain.report_range(start, end, granularity, now=NOW)
    assert refused.value.field == field and refused.value.status == 422


def test_two_years_is_allowed() -> None:
    span = domain.report_range(NOW - timedelta(days=731), NOW, "month", now=NOW)
    assert span.granularity == "month"


def test_periods_are_labelled_in_the_site_time_zone() -> None:
    late = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # Monday 00:00 in Berlin, after the switch to summer time
    assert domain.period_of(late, "hour", BERLIN) == "2026-03-30T00:00+02:00"
    assert domain.period_of(late, "day", BERLIN) == "2026-03-30"
    assert domain.period_of(late, "week", BERLIN) == "2026-W14"
    assert domain.period_of(late, "day", domain.zone(None)) == "2026-03-29"
    assert domain.period_of(datetime(2026, 12, 31, 23, tzinfo=UTC), "month", BERLIN) == "2027-01"


def test_an_unknown_time_zone_falls_back_to_utc() -> None:
    assert domain.zone("Mars/Olympus") == domain.zone("UTC")


def test_an_interval_splits_over_its_hours_without_losing_a_second() -> None:
    start = datetime(2026, 3, 10, 8, 5, 30, tzinfo=UTC)
    parts = list(domain.split_hours(start, datetime(2026, 3, 10, 10, 10, tzinfo=UTC)))
    assert [(h.hour, s) for h, s in parts] == [(8, 3270), (9, 3600), (10, 600)]
    assert sum(s for _, s in parts) == 7470
    assert list(domain.split_hours(start, start)) == []


@pytest.mark.parametrize("outcome, failed, ok", [
    (SessionOutcome(101, "Local"), False, 1),
    (SessionOutcome(100, "Local"), False, 0),  # exactly 0.1 kWh is not more than 0.1 kWh
    (SessionOutcome(5000, "EVDisconnected"), False, 1),
    (SessionOutcome(5000, "Remote"), True, 0),  # a fault in between
    (SessionOutcome(5000, "EmergencyStop"), False, 0),
    (SessionOutcome(5000, None), False, 0),  # reconciled without a reason
])
def test_a_first_attempt_succeeds_with_energy_a_normal_stop_and_no_fault(outcome: SessionOutcome, failed: bool,
                                                                          ok: int) -> None:
    delta = domain.first_attempt("site-1", "ev", NOW, outcome, failed)
    (row,) = delta.rows.values()
    assert (row["visits"], row["first_attempt_ok"]) == (1, ok)


def test_a_visit_whose_session_is_not_known_yet_counts_nothing() -> None:
    assert domain.first_attempt("site-1", "ev", NOW, None, False).rows == {}


def test_revenue_goes_to_the_invoice_date_in_the_site_time_zone() -> None:
    issued = datetime(2026, 3, 9, 23, 30, tzinfo=UTC)  # 00:30 on the 10th in Berlin
    delta = domain.document_revenue("invoice", "site-1", "EUR", issued, BERLIN, {"parking": Decimal("2.50")},
                                    Decimal("2.50"), Decimal("0.48"), Decimal("2.98"))
    assert {k[2].isoformat() for k in delta.rows} == {"2026-03-10"}
    assert delta.rows[("site-1", "EUR", issued.date().replace(day=10), "invoice", "parking")] == Decimal("2.50")
    assert sum(delta.documents.values()) == 1


def test_a_revenue_day_counts_when_its_local_midnight_is_in_the_range() -> None:
    span = domain.Range(datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC))
    assert [d.isoformat() for d in domain.local_days(span, BERLIN)] == ["2026-03-10", "2026-03-10"]
    assert [d.isoformat() for d in domain.local_days(span, domain.zone("UTC"))] == ["2026-03-09", "2026-03-09"]


@pytest.mark.parametrize("granularity", ["hour", "day", "week", "month"])
def test_the_hours_of_a_range_are_counted_per_period_across_a_dst_change(granularity: str) -> None:
    span = domain.Range(datetime(2026, 3, 27, 7, 30, tzinfo=UTC), datetime(2026, 4, 2, 5, 0, tzinfo=UTC),
                        granularity)  # type: ignore[arg-type]
    counted = domain.hours_per_period(span, BERLIN)
    expected: dict[str, int] = {}
    hour = domain.hour_of(span.start)
    while hour < span.end:
        label = domain.period_of(hour, span.granularity, BERLIN)
        expected[label] = expected.get(label, 0) + 1
        hour += timedelta(hours=1)
    assert counted == expected
    if granularity == "day":
        assert counted["2026-03-29"] == 23  # the switch to summer time


@pytest.mark.parametrize("kwh, kind, band", [
    ("13.8", "plug_in_hybrid", "<30"), ("29.999", "electric", "<30"), ("30", "electric", "30-50"),
    ("52.0", "electric", "50-75"), ("75", "electric", "75-100"), ("99.999", "electric", "75-100"),
    ("100", "electric", ">=100"), ("212.7", "electric", ">=100"), (None, "electric", "unknown"),
    (None, None, "unknown"), (None, "combustion", "none"), ("1.5", "combustion", "<30"),
])
def test_a_battery_falls_in_the_band_whose_lower_bound_it_reaches(kwh: str | None, kind: str | None,
                                                                  band: str) -> None:
    assert domain.battery_band(domain.battery_wh(kwh), kind) == band


def test_makes_differing_in_case_or_spaces_are_one_named_as_most_spell_it() -> None:
    counts = domain.vehicle_distribution([
        domain.VehicleGroup("electric", "Kia", 77_400, 2), domain.VehicleGroup("electric", "KIA  ", 64_000, 1),
        domain.VehicleGroup("electric", None, None, 1), domain.VehicleGroup("plug_in_hybrid", "  ", 13_800, 1),
        domain.VehicleGroup(None, None, None, 4)])
    assert counts.vehicles == 9
    assert counts.by_make == {"Kia": 3, "unknown": 6}
    assert list(counts.by_type.items()) == [("electric", 4), ("plug_in_hybrid", 1), ("unknown", 4)]
    assert counts.by_battery == {"<30": 1, "30-50": 0, "50-75": 1, "75-100": 2, ">=100": 0, "unknown": 5}
    assert domain.vehicle_distribution([]) == domain.VehicleDistribution(
        0, {}, {}, {"<30": 0, "30-50": 0, "50-75": 0, "75-100": 0, ">=100": 0})


def test_a_range_splits_into_whole_local_days_or_months_and_the_hours_around_them() -> None:
    span = domain.Range(datetime(2026, 3, 28, 10, 30, tzinfo=UTC), datetime(2026, 3, 31, 5, tzinfo=UTC))
    split = domain.split_range(span, BERLIN, "day")  # summer time from the 29th: that day has 23 hours
    assert (split.first, split.end) == (datetime(2026, 3, 29).date(), datetime(2026, 3, 31).date())
    assert split.edges == ((datetime(2026, 3, 28, 10, tzinfo=UTC), datetime(2026, 3, 28, 23, tzinfo=UTC)),
                           (datetime(2026, 3, 30, 22, tzinfo=UTC), datetime(2026, 3, 31, 5, tzinfo=UTC)))
    kolkata = domain.zone("Asia/Kolkata")  # +5:30: a local day starts with the hour from 18:30 UTC
    by_month = domain.split_range(domain.Range(datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)),
                                  kolkata, "month")
    assert (by_month.first, by_month.end) == (datetime(2026, 2, 1).date(), datetime(2026, 4, 1).date())
    assert by_month.edges == ((datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 1, 31, 19, tzinfo=UTC)),
                              (datetime(2026, 3, 31, 19, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)))
    short = domain.Range(datetime(2026, 3, 10, 8, tzinfo=UTC), datetime(2026, 3, 10, 9, 15, tzinfo=UTC))
    assert domain.split_range(short, BERLIN, "day") == domain.Split(
        None, None, ((datetime(2026, 3, 10, 8, tzinfo=UTC), datetime(2026, 3, 10, 10, tzinfo=UTC)),))
