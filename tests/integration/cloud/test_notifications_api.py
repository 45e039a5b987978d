"""The notification API, both run modes: the inbox is the caller's own (another's notification is a 404),
read marks and the unread count, preferences validated naming the field, templates edited by admins and
refused with a 422 naming the line on a syntax error or an unknown variable, then used for the next message."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cloud.contracts.payments import PaymentCompleted
from tests.integration.cloud.test_notifications_delivery import (
    NOW,
    Notifier,
    driver,
    fast,
    known,
    mode,
    started,
)
from tests.support.identity import headers
from tests.support.waiting import eventually

__all__ = ["mode"]


def paid(n: int, account: str = "acc-driver-a") -> PaymentCompleted:
    return PaymentCompleted(payment_id=f"p-{n}", account_id=account, amount=Decimal("4.20"), currency="EUR",
                            completed_at=NOW)


@pytest.fixture
async def notifier(mode: bool, tmp_path: Path) -> AsyncIterator[Notifier]:
    async with started(tmp_path, mode, fast()) as n:
        await n.publish(driver(), driver("acc-driver-b", language="de", mail="b@example.org"))
        await known(n, 2)
        yield n


async def inbox(n: Notifier, who: str = "driver_a", **query: str) -> dict[str, Any]:
    answer = await n.client.get("/notifications", params=query, headers=headers(who))
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_the_inbox_is_the_callers_own_with_an_unread_count(notifier: Notifier) -> None:
    n = notifier
    await n.publish(paid(1), paid(2), paid(3, "acc-driver-b"))
    await eventually(lambda: _unread(n, 2), what="two in driver A's inbox")
    # the bus may hand the third event over after the first two: B's is not there when A's are
    await eventually(lambda: _unread_of(n, "driver_b", 1), what="one in driver B's inbox")
    mine = await inbox(n)
    items = mine["items"]
    assert isinstance(items, list) and [i["title"] for i in items] == ["Payment received"] * 2
    assert "4.20 EUR" in items[0]["body"]
    theirs = await inbox(n, "driver_b")
    assert [i["title"] for i in theirs["items"]] == ["Zahlung erhalten"]
    other = theirs["items"][0]["id"]
    assert (await n.client.post(f"/notifications/{other}/read", headers=headers("driver_a"))).status_code == 404
    read = await n.client.post(f"/notifications/{items[0]['id']}/read", headers=headers("driver_a"))
    assert read.status_code == 200 and read.json()["read_at"] is not None
    again = await n.client.post(f"/notifications/{items[0]['id']}/read", headers=headers("driver_a"))
    assert again.json()["read_at"] == read.json()["read_at"]  # reading twice keeps the first time
    assert (await inbox(n))["unread"] == 1
    assert [i["id"] for i in (await inbox(n, unread="true"))["items"]] == [items[1]["id"]]
    assert (await inbox(n, "driver_b"))["unread"] == 1


async def _unread(n: Notifier, count: int) -> bool:
    return (await inbox(n))["unread"] == count


async def test_a_channel_switched_off_is_not_used(notifier: Notifier) -> None:
    n = notifier
    put = await n.client.put("/notifications/preferences", headers=headers("driver_a"),
                             json={"channels": {"payment.completed": {"in_app": False}}})
    assert put.status_code == 200 and put.json()["channels"] == {"payment.completed": {"in_app": False}}
    assert (await n.client.get("/notifications/preferences", headers=headers("driver_a"))).json()["channels"] == {
        "payment.completed": {"in_app": False}}
    await n.publish(paid(1), paid(2, "acc-driver-b"))
    await eventually(lambda: _unread_of(n, "driver_b", 1), what="driver B's")
    assert (await inbox(n))["items"] == []
    defaults = await n.client.get("/notifications/preferences", headers=headers("driver_b"))
    assert defaults.json() == {"quiet_hours": None, "channels": {}, "time_zone": "Europe/Berlin", "email_bounce": None}


async def _unread_of(n: Notifier, who: str, count: int) -> bool:
    return (await inbox(n, who))["unread"] == count


@pytest.mark.parametrize("body, field", [
    ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours.start"),
    ({"quiet_hours": {"start": "22:00"}}, "quiet_hours.end"),
    ({"channels": {"parking.teleported": {"email": False}}}, "channels"),
    ({"channels": {"payment.completed": {"pigeon": False}}}, "channels"),
])
async def test_bad_preferences_are_a_422_naming_the_field_and_change_nothing(notifier: Notifier,
                                                                           body: dict[str, object],
                                                                           field: str) -> None:
    answer = await notifier.client.put("/notifications/preferences", headers=headers("driver_a"), json=body)
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    kept = await notifier.client.get("/notifications/preferences", headers=headers("driver_a"))
    assert kept.json()["quiet_hours"] is None and kept.json()["channels"] == {}


@pytest.mark.parametrize("text, line, what", [
    ("Hello {{ name }},\nyou paid {{ amount }\n", 2, "unexpected"),
    ("Hello {{ name }},\n\nyour card {{ card_number }} paid.", 3, "card_number"),
    ("{% for x in amount %}\n{{ x }}\n{% endfor %}\n{% if %}", 4, ""),
])
async def test_a_template_with_a_syntax_error_or_unknown_variable_is_a_422_naming_the_line(
        notifier: Notifier, text: str, line: int, what: str) -> None:
    answer = await notifier.client.put("/notifications/templates/payment.completed/en", headers=headers("admin"),
                                       json={"subject": "Paid", "text": text})
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert detail.startswith(f"text: line {line}:") and what in detail, detail
    listed = (await notifier.client.get("/notifications/templates", headers=headers("admin"))).json()["items"]
    assert not next(t for t in listed if (t["kind"], t["language"]) == ("payment.completed", "en"))["custom"]


async def test_an_admin_edits_a_template_and_the_next_message_uses_it(notifier: Notifier) -> None:
    n = notifier
    saved = await n.client.put("/notifications/templates/payment.completed/de", headers=headers("admin"), json={
        "subject": "Danke {{ name }}", "text": "Bezahlt: {{ amount }} {{ currency }}",
        "html": "<b>{{ amount }}</b>"})
    assert saved.status_code == 200, saved.text
    assert saved.json()["custom"] and "amount" in saved.json()["variables"]
    await n.publish(paid(7, "acc-driver-b"))
    await eventually(lambda: _unread_of(n, "driver_b", 1), what="the message")
    item = (await inbox(n, "driver_b"))["items"][0]
    assert (item["title"], item["body"]) == ("Danke Ada", "Bezahlt: 4.20 EUR")
    assert (await n.client.put("/notifications/templates/payment.completed/fr", headers=headers("admin"),
                               json={"subject": "x", "text": "y"})).status_code == 404
    assert (await n.client.put("/notifications/templates/no.such/en", headers=headers("admin"),
                               json={"subject": "x", "text": "y"})).status_code == 404
    assert (await n.client.put("/notifications/templates/payment.completed/en", headers=headers("operator_1"),
                               json={"subject": "x", "text": "y"})).status_code == 403
    assert (await n.client.put("/notifications/templates/payment.completed/en", headers=headers("admin"),
                               json={"subject": "", "text": "y"})).status_code == 422


async def test_failed_and_retry_answer_unknown_ids_and_roles(notifier: Notifier) -> None:
    n = notifier
    assert (await n.client.get("/notifications/failed", headers=headers("driver_a"))).status_code == 403
    assert (await n.client.get("/notifications/failed", headers=headers("admin"))).json() == {"items": []}
    missing = await n.client.post("/notifications/failed/nope/retry", headers=headers("admin"))
    assert missing.status_code == 404 and "notification_id" in missing.json()["detail"]
    await n.publish(paid(1))
    await eventually(lambda: _unread(n, 1), what="a notification")
    sent_one = (await inbox(n))["items"][0]["id"]
    conflict = await n.client.post(f"/notifications/failed/{sent_one}/retry", headers=headers("admin"))
    assert conflict.status_code == 409  # it was delivered: nothing to retry
    assert (await n.client.get("/notifications", headers={})).status_code == 401
