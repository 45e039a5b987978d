"""The figures of a year's report by hour are written as text without going through pydantic: that text
must be what ``repr(round(x, n))`` (and so pydantic) writes, for every value a usage figure can take."""

from __future__ import annotations

from decimal import Decimal

import pydantic_core
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.analytics.domain import USAGE_FIELDS
from cloud.analytics.repository import WRITTEN_FIGURES, WrittenHours
from cloud.analytics.service import _periods_json, _rounded, _usage_periods

PLACES = {1: "%.1f", 3: "%.3f", 4: "%.4f"}


@given(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(sorted(PLACES)))
def test_a_rounded_figure_is_written_as_repr_writes_the_rounded_float(value: float, places: int) -> None:
    assert _rounded(value, PLACES[places]) == repr(round(value, places))


@given(st.integers(min_value=0, max_value=2_000_000_000), st.integers(min_value=1, max_value=10_000_000))
def test_a_share_of_two_counts_is_written_as_repr_writes_it(part: int, whole: int) -> None:
    # the hours' figures: seconds over 3,600 or a site's bay seconds, Wh over a site's charger Wh
    assert _rounded(part / whole, "%.4f") == repr(round(part / whole, 4))
    assert _rounded(part / 3600, "%.3f") == repr(round(part / 3600, 3))
    assert _rounded(part / 60, "%.1f") == repr(round(part / 60, 1))


def test_the_ties_and_the_edges_are_written_as_repr_writes_them() -> None:
    for value in (0.0, -0.0, 0.0005, 0.00049999, 0.0025, 1.0, 2.5, 0.125, 0.0001, 1e-9, 123456.7895, 9.99995,
                  99_999_999_999.99995, 1e11, 562949953421312.25, 1e300):
        for places, fmt in PLACES.items():
            assert _rounded(value, fmt) == repr(round(value, places)), (value, places)


def written_hours(rows: list[dict[str, int]], labels: list[str]) -> WrittenHours:
    """The hours as PostgreSQL writes them (cloud.analytics.repository._written_sql), from their figures."""
    heads = [f'{{"period":"{label}","stays":{r["stays"]},"charging_sessions":{r["sessions"]},'
             f'"energy_wh":{r["energy_wh"]},"energy_kwh":"{Decimal(r["energy_wh"]) / 1000}","occupied_hours":'
             for label, r in zip(labels, rows, strict=True)]
    middles = [f'"reservations":{r["reservations"]},"reservations_kept":{r["kept"]},'
               f'"reservations_cancelled":{r["cancelled"]},"no_shows":{r["no_shows"]},' for r in rows]
    return WrittenHours(heads, middles, {n: [r[n] for r in rows] for n in WRITTEN_FIGURES}, {})


@pytest.mark.parametrize("occupied_s", [7_201, 10**15])  # an hour's figure, and one past the digits' range
def test_the_written_periods_are_the_periods_pydantic_writes(occupied_s: int) -> None:
    labels = ["2026-03-10T09:00+01:00", "2026-03-10T10:00+01:00", "2026-03-10T08:00+01:00"]
    rows = [dict.fromkeys(USAGE_FIELDS, 0) | {"stays": 3, "occupied_s": occupied_s, "energy_wh": 12_345,
                                               "idle_s": 95, "kept": 1, "no_shows": 2, "visits": 3,
                                               "first_attempt_ok": 2},
            dict.fromkeys(USAGE_FIELDS, 0),
            dict.fromkeys(USAGE_FIELDS, 0) | {"occupied_s": 1, "energy_wh": 7, "blocked_s": 3_601}]
    available_s, capacity_wh = 12 * 3600, 44_000
    expected = pydantic_core.to_json(_usage_periods(
        dict(zip(labels, rows, strict=True)), dict.fromkeys(labels, available_s), dict.fromkeys(labels, capacity_wh)))
    assert f"[{_periods_json(written_hours(rows, labels), available_s, capacity_wh)}]" == expected.decode()
