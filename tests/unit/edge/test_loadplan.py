"""Site load management: the plan that shares a site's limit among sessions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.loadplan import Demand, amps_from_watts, plan

ELEVEN_KW_A = 16.0  # 11 kW = 16 A on three phases at 230 V
SITE_22_KW_A = amps_from_watts(22_000)


def chargers(n: int, **kwargs: float) -> list[Demand]:
    return [Demand(key=f"CP{i}", started_order=i, max_current_a=ELEVEN_KW_A, **kwargs) for i in range(1, n + 1)]


def test_22_kw_shared_among_four_11_kw_chargers_as_they_start_and_stop() -> None:
    assert plan(SITE_22_KW_A, chargers(1)) == {"CP1": 16.0}
    assert plan(SITE_22_KW_A, chargers(2)) == {"CP1": 15.9, "CP2": 15.9}
    assert plan(SITE_22_KW_A, chargers(3)) == {"CP1": 10.6, "CP2": 10.6, "CP3": 10.6}
    assert plan(SITE_22_KW_A, chargers(4)) == {"CP1": 7.9, "CP2": 7.9, "CP3": 7.9, "CP4": 7.9}
    two_left = [d for d in chargers(4) if d.key in {"CP3", "CP4"}]
    assert plan(SITE_22_KW_A, two_left) == {"CP3": 15.9, "CP4": 15.9}


def test_unused_current_goes_to_the_others() -> None:
    demands = chargers(3)
    slow = Demand(key="CP1", started_order=1, max_current_a=ELEVEN_KW_A, drawn_current_a=4.0)
    shares = plan(30.0, [slow, *demands[1:]])
    assert shares["CP1"] == 6.0  # draws 4 A: keeps 4 + 2 A margin
    assert shares["CP2"] == shares["CP3"] == 12.0


def test_the_latest_sessions_pause_when_the_minimum_cannot_be_met() -> None:
    shares = plan(15.0, chargers(3))
    assert shares == {"CP1": 7.5, "CP2": 7.5, "CP3": 0.0}


def test_a_zero_limit_pauses_everybody() -> None:
    assert set(plan(0.0, chargers(2)).values()) == {0.0}


def test_a_negative_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        plan(-1.0, chargers(1))


@given(limit=st.floats(0, 500), maxima=st.lists(st.floats(6, 80), min_size=0, max_size=30),
       draws=st.lists(st.one_of(st.none(), st.floats(0, 80)), min_size=30, max_size=30))
def test_the_plan_never_exceeds_the_limit_nor_a_chargers_maximum(limit: float, maxima: list[float],
                                                                 draws: list[float | None]) -> None:
    demands = [Demand(key=i, started_order=i, max_current_a=m, drawn_current_a=draws[i]) for i, m in enumerate(maxima)]
    shares = plan(limit, demands)
    assert sum(shares.values()) <= limit + 1e-6
    for demand in demands:
        share = shares[demand.key]
        assert share == 0.0 or demand.min_current_a - 0.1 <= share <= demand.max_current_a + 1e-6
