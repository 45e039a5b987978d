"""Pure parking rules: bay usage periods (idle, overstay) and the site power-limit request."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from cloud.parking import domain
from cloud.parking.domain import Bay
from mqtt import BayUsage, CommandStatus

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def bay(charger_id: str | None = "CP-1", connector_id: int | None = 1) -> Bay:
    return Bay(site_id="s", bay_id="B1", state="occupied", changed_at=T0, updated_at=T0,
               charger_id=charger_id, connector_id=connector_id)


def usage(state: str, since: datetime, transaction_id: int | None = None, *, charger_id: str = "CP-1",
          connector_id: int = 1) -> BayUsage:
    return BayUsage(bay_id="B1", charger_id=charger_id, connector_id=connector_id, state=state,  # type: ignore[arg-type]
                    since=since, transaction_id=transaction_id, words=2)


def apply(b: Bay, state: str, since: datetime, reported_at: datetime,
          transaction_id: int | None = None) -> domain.UsageChange | None:
    return domain.apply_usage(b, usage(state, since, transaction_id), reported_at, reported_at)


# --- usage periods -------------------------------------------------------------------------


def test_a_car_parked_without_charging_starts_an_idle_period() -> None:
    b = bay()
    change = apply(b, "blocked", T0, T0)
    assert change == domain.UsageChange(started=domain.UsagePeriod("blocked", T0, None))
    assert (b.usage, b.usage_since, b.usage_reported_at) == ("blocked", T0, T0)


def test_charging_ends_the_idle_period_with_its_duration() -> None:
    b = bay()
    apply(b, "blocked", T0, T0)
    change = apply(b, "charging", T0 + 7 * MIN, T0 + 7 * MIN, transaction_id=41)
    assert change is not None and change.started is None
    assert change.ended is not None
    assert change.ended.period.state == "blocked"
    assert change.ended.ended_at == T0 + 7 * MIN
    assert change.ended.duration_s == 7 * 60
    assert change.ended.next_state == "charging"
    assert (b.usage, b.usage_transaction_id) == ("charging", 41)


def test_a_session_that_ended_with_the_car_still_there_is_overstay_until_it_leaves() -> None:
    b = bay()
    apply(b, "charging", T0, T0, transaction_id=41)
    started = apply(b, "idle", T0 + 60 * MIN, T0 + 60 * MIN, transaction_id=41)
    assert started == domain.UsageChange(started=domain.UsagePeriod("idle", T0 + 60 * MIN, 41))
    left = apply(b, "free", T0 + 95 * MIN, T0 + 95 * MIN)
    assert left is not None and left.started is None and left.ended is not None
    assert (left.ended.period.transaction_id, left.ended.duration_s, left.ended.next_state) == (41, 35 * 60, "free")


def test_the_same_usage_reported_again_is_no_new_period() -> None:
    b = bay()
    apply(b, "idle", T0, T0, transaction_id=41)
    # e.g. the edge restarted and reports its current usage again, in a new envelope
    assert apply(b, "idle", T0, T0 + 5 * MIN, transaction_id=41) == domain.UsageChange()


def test_a_transaction_id_filled_in_later_corrects_the_period_without_a_new_one() -> None:
    b = bay()
    apply(b, "idle", T0, T0)
    assert apply(b, "idle", T0, T0 + MIN, transaction_id=41) == domain.UsageChange()
    assert b.usage_transaction_id == 41


def test_an_older_report_arriving_late_changes_nothing() -> None:
    b = bay()
    apply(b, "idle", T0 + 60 * MIN, T0 + 60 * MIN, transaction_id=41)
    assert apply(b, "blocked", T0, T0) is None  # a replayed backlog after the live message
    assert (b.usage, b.usage_since, b.usage_transaction_id) == ("idle", T0 + 60 * MIN, 41)


def test_a_newer_report_wins_even_when_its_state_began_earlier() -> None:
    # The sensor saw the car at 18:02, the charger had started the session at 18:01: the edge
    # first said idle, then corrected to charging since 18:01. The correction must win.
    b = bay()
    apply(b, "blocked", T0 + 2 * MIN, T0 + 2 * MIN)
    change = apply(b, "charging", T0 + MIN, T0 + 3 * MIN, transaction_id=41)
    assert change is not None and change.ended is not None
    assert b.usage == "charging"
    assert change.ended.duration_s == 0, "a period never lasts less than nothing"


def test_a_new_period_of_the_same_kind_ends_the_old_one_where_it_starts() -> None:
    # The free report between two idle cars was dropped by the site's outbox.
    b = bay()
    apply(b, "blocked", T0, T0)
    change = apply(b, "blocked", T0 + 30 * MIN, T0 + 30 * MIN)
    assert change is not None and change.ended is not None and change.started is not None
    assert (change.ended.next_state, change.ended.duration_s) == ("blocked", 30 * 60)
    assert change.started.since == T0 + 30 * MIN


def test_a_bay_the_inventory_did_not_describe_takes_the_charger_from_the_report() -> None:
    b = bay(charger_id=None, connector_id=None)
    domain.apply_usage(b, usage("blocked", T0, charger_id="CP-9", connector_id=2), T0, T0)
    assert (b.charger_id, b.connector_id) == ("CP-9", 2)
    described = bay()
    domain.apply_usage(described, usage("blocked", T0, charger_id="CP-9", connector_id=2), T0, T0)
    assert (described.charger_id, described.connector_id) == ("CP-1", 1), "the inventory describes the hardware"


# --- power limit -----------------------------------------------------------------------------


@pytest.mark.parametrize("limit_a, limit_w, fields", [
    (40.0, None, []),
    (None, 27_600.0, []),
    (None, None, ["limit_a", "limit_w"]),
    (40.0, 27_600.0, ["limit_a", "limit_w"]),
    (0.0, None, ["limit_a"]),
    (-3.0, None, ["limit_a"]),
    (math.nan, None, ["limit_a"]),
    (10_001.0, None, ["limit_a"]),
    (None, 10_000_001.0, ["limit_w"]),
])
def test_a_power_limit_request_names_each_field_it_gets_wrong(limit_a: float | None, limit_w: float | None,
                                                             fields: list[str]) -> None:
    assert [field for field, _ in domain.power_limit_errors(limit_a, limit_w)] == fields


def test_unanswered_commands_are_resent_at_expiry_then_less_and_less_often() -> None:
    assert domain.resend_interval(1) == domain.COMMAND_TTL == timedelta(minutes=10)
    assert domain.resend_interval(2) == timedelta(minutes=20)
    assert domain.resend_interval(3) == timedelta(minutes=40)
    assert domain.resend_interval(4) == timedelta(hours=1)
    assert domain.resend_interval(500) == timedelta(hours=1)


def test_a_request_is_given_up_after_a_day_without_an_answer() -> None:
    assert not domain.request_given_up(T0, T0 + timedelta(hours=23, minutes=59))
    assert domain.request_given_up(T0, T0 + timedelta(hours=24))


def test_the_edge_answer_settles_the_request_except_expired_which_keeps_it_wanted() -> None:
    assert domain.status_after_result(CommandStatus.ACCEPTED) == domain.ACCEPTED
    assert domain.status_after_result(CommandStatus.REJECTED) == domain.REJECTED
    assert domain.status_after_result(CommandStatus.FAILED) == domain.FAILED
    assert domain.status_after_result(CommandStatus.EXPIRED) == domain.PENDING


def test_an_expired_answer_resends_now_only_when_the_command_really_expired() -> None:
    expires, scheduled = T0 + 10 * MIN, T0 + 10 * MIN
    assert domain.next_send_after_expired_answer(expires, scheduled, T0 + 4 * 60 * MIN) == T0 + 4 * 60 * MIN
    # expired by the site's clock but not by ours: the clocks disagree; do not loop
    assert domain.next_send_after_expired_answer(expires, scheduled, T0 + MIN) == scheduled


def test_the_applied_limit_is_what_the_site_reports_else_what_was_asked() -> None:
    assert domain.applied_limit_from_result({"limit_a": 38.5}, 40.0) == 38.5
    assert domain.applied_limit_from_result({}, 40.0) == 40.0
    assert domain.applied_limit_from_result({"limit_a": True}, None) is None
    assert domain.applied_limit_from_result({"limit_a": "40"}, None) is None


def test_reports_of_edges_before_contract_1_1_are_read_in_the_glossary_s_words() -> None:
    old_idle = BayUsage(bay_id="B1", charger_id="CP-1", connector_id=1, state="idle", since=T0)
    old_overstay = BayUsage(bay_id="B1", charger_id="CP-1", connector_id=1, state="overstay", since=T0 + MIN,
                            transaction_id=41)
    assert (old_idle.glossary_state, old_overstay.glossary_state) == ("blocked", "idle")
    b = bay()
    domain.apply_usage(b, old_idle, T0, T0)
    assert b.usage == "blocked"
    change = domain.apply_usage(b, old_overstay, T0 + MIN, T0 + MIN)
    assert b.usage == "idle"
    assert change is not None and change.ended is not None and change.ended.period.state == "blocked"
