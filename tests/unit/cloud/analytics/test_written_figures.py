"""The figures of a year's report by hour are written as text without going through pydantic: that text
must be what ``repr(round(x, n))`` (and so pydantic) writes, for every value a usage figure can take."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cloud.analytics.service import _rounded

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
