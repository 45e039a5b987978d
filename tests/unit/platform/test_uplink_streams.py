"""The bookkeeping of one uplink stream: what arrived, what is missing, in any arrival order."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.platform.delivery import Stream


def test_a_hole_and_a_tail_are_what_is_missing() -> None:
    stream = Stream()
    for seq in (1, 2, 4, 5):
        stream.arrived(seq)
    stream.heard_of(7)  # the edge's high-water mark: 6 and 7 exist, nothing came after 5
    assert (stream.done_through, stream.gaps(), stream.missing()) == (2, [(3, 3), (6, 7)], 3)
    assert stream.first_gap() == (3, 3)
    stream.arrived(3)
    assert (stream.done_through, stream.gaps()) == (5, [(6, 7)])
    stream.arrived(6, 7)  # gone: booked as done, never asked again
    assert (stream.done_through, stream.gaps(), stream.first_gap(), stream.missing()) == (7, [], None, 0)


def test_repeats_and_old_numbers_change_nothing() -> None:
    stream = Stream()
    stream.arrived(1, 3)
    stream.arrived(2)
    stream.arrived(5)
    stream.arrived(5)
    assert (stream.done_through, stream.received, stream.high_water) == (3, [[5, 5]], 5)


def test_a_lower_high_water_mark_never_hides_what_arrived() -> None:
    stream = Stream()
    stream.arrived(10)
    stream.heard_of(4)
    assert stream.gaps() == [(1, 9)]


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 60).flatmap(lambda n: st.tuples(st.just(n), st.permutations(range(1, n + 1)),
                                                      st.integers(0, n))))
def test_in_any_order_the_gaps_are_exactly_what_did_not_arrive(case: tuple[int, list[int], int]) -> None:
    n, order, arrived_count = case
    stream = Stream()
    stream.heard_of(n)
    arrived = order[:arrived_count]
    for seq in arrived:
        stream.arrived(seq)
    missing = sorted(set(range(1, n + 1)) - set(arrived))
    assert [seq for first, last in stream.gaps() for seq in range(first, last + 1)] == missing
    assert stream.missing() == len(missing)
    assert stream.done_through == (missing[0] - 1 if missing else n)
    ranges = stream.received
    assert all(a <= b for a, b in ranges)
    assert all(b + 1 < c for (_, b), (c, _) in pairwise(ranges))
