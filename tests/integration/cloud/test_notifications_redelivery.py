"""Nothing twice, nothing lost: every consumed event of a session redelivered (on RabbitMQ too) makes no
second message; a service stopped while an e-mail is in flight repeats only that one, with the same
Message-ID, after its restart; quiet hours hold a non-critical message until they end (in the driver's
time zone) and never the idle-fee warning, and quiet hours changed to ones that do not cover now release what
they held (but never a reminder before its time); a reservation reminder is withdrawn when it is cancelled."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from cloud.contracts import Event
from cloud.contracts.charging import ChargingCompleted, ChargingStarted
from cloud.contracts.parking import Cancelled, Reserved
from cloud.contracts.payments import InvoiceIssued, PaymentCompleted
from tests.integration.cloud.test_notifications_delivery import (
    NOW,
    TARIFF,
    Mailbox,
    Notifier,
    Place,
    driver,
    finished,
    known,
    mailbox,
    mode,
    running,
    smtp,
    started,
)
from tests.support.identity import headers
from tests.support.waiting import eventually

__all__ = ["mailbox", "mode"]


def session_events() -> list[Event]:
    bodies = [
        ChargingStarted(session_id="s-9", site_id="site-1", transaction_id=9, charger_id="cp-1",
                        owner_id="acc-driver-a", energy_wh=0, started_at=NOW - timedelta(hours=1)),
        finished("s-9"),
        ChargingCompleted(session_id="s-9", site_id="site-1", transaction_id=9, charger_id="cp-1",
                          owner_id="acc-driver-a", energy_wh=23_456, started_at=NOW - timedelta(hours=1),
                          stopped_at=NOW + timedelta(minutes=5)),
        PaymentCompleted(payment_id="p-9", account_id="acc-driver-a", amount=Decimal("7.04"), currency="EUR",
                         completed_at=NOW),
        InvoiceIssued(site_id="site-1", account_id="acc-driver-a", currency="EUR", number="S1-0009", issued_at=NOW,
                      components={"energy": Decimal("5.92")}, net=Decimal("5.92"), tax=Decimal("1.12"),
                      total=Decimal("7.04"), invoice_id="i-9"),
    ]
    return [Event.of(body, source="test") for body in bodies]


async def inbox_kinds(n: Notifier) -> list[str]:
    answer = await n.client.get("/notifications", headers=headers("driver_a"))
    return sorted(i["kind"] for i in answer.json()["items"])


async def test_redelivering_every_event_of_a_session_sends_nothing_twice(mode: bool, tmp_path: Path,
                                                                         mailbox: Mailbox) -> None:
    async with started(tmp_path, mode, smtp(mailbox)) as n:
        account = await n.publish(driver(), TARIFF)
        await known(n, 2)
        events = session_events()
        await n.publish(events=events)
        await eventually(lambda: len(mailbox.messages) == 5, what="five e-mails")
        first_inbox = await inbox_kinds(n)
        assert len(first_inbox) == 5
        await n.publish(events=account + events + events)  # the broker redelivers all of them, twice
        sentinel = Event.of(PaymentCompleted(payment_id="p-10", account_id="acc-driver-a", amount=Decimal("1.00"),
                                             currency="EUR", completed_at=NOW), source="test")
        await n.publish(events=[sentinel])
        await eventually(lambda: len(mailbox.messages) == 6, what="the sentinel after the redeliveries")
        await asyncio.sleep(0.3)
        assert len(mailbox.messages) == 6 and len(set(mailbox.ids())) == 6
        assert len(await inbox_kinds(n)) == 6


async def test_a_stop_mid_delivery_repeats_only_the_message_in_flight_with_its_message_id(
        mode: bool, tmp_path: Path, mailbox: Mailbox) -> None:
    place = Place(mode, tmp_path)
    await place.open()
    chosen = smtp(mailbox, concurrency=1, lease_seconds=0.5)
    try:
        async with running(place, chosen) as n:
            await n.publish(driver())
            await known(n, 1)
            mailbox.hold.clear()  # the server takes the message but does not answer: we stop meanwhile
            await n.publish(events=session_events())
            await eventually(lambda: len(mailbox.messages) == 1, what="the first message at the server")
        in_flight = mailbox.ids()[0]
        mailbox.hold.set()
        async with running(place, chosen) as n:
            await eventually(lambda: len(mailbox.messages) == 6, what="everything after the restart")
            await asyncio.sleep(0.3)
        ids = mailbox.ids()
        assert len(ids) == 6 and ids.count(in_flight) == 2  # the one in flight again, same Message-ID
        assert len(set(ids)) == 5  # every other exactly once
    finally:
        await place.drop()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def test_quiet_hours_hold_a_receipt_until_they_end_but_not_the_idle_fee_warning(
        mode: bool, tmp_path: Path, mailbox: Mailbox) -> None:
    clock = Clock(datetime(2026, 3, 10, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    async with started(tmp_path, mode, smtp(mailbox), clock) as n:
        await n.publish(driver(zone="Europe/Berlin"), TARIFF)
        await known(n, 2)
        put = await n.client.put("/notifications/preferences", headers=headers("driver_a"),
                                 json={"quiet_hours": {"start": "22:00", "end": "07:00"}})
        assert put.status_code == 200, put.text
        assert put.json()["time_zone"] == "Europe/Berlin"
        await n.publish(PaymentCompleted(payment_id="p-1", account_id="acc-driver-a", amount=Decimal("3.00"),
                                         currency="EUR", completed_at=clock.at), finished())
        await eventually(lambda: mailbox.subjects() == ["Charging complete — please move your car"],
                         what="the critical warning at once")
        await asyncio.sleep(0.3)
        assert len(mailbox.messages) == 1  # the receipt waits
        assert sorted(await inbox_kinds(n)) == ["charging.energy_finished", "payment.completed"]  # in-app: at once
        clock.at = datetime(2026, 3, 11, 5, 59, tzinfo=UTC)  # 06:59 in Berlin: still quiet
        await asyncio.sleep(0.3)
        assert len(mailbox.messages) == 1
        clock.at = datetime(2026, 3, 11, 6, 0, 1, tzinfo=UTC)  # 07:00:01 in Berlin
        await eventually(lambda: len(mailbox.messages) == 2, what="the receipt after the quiet hours")
        assert mailbox.subjects()[1] == "Payment received"


async def test_quiet_hours_changed_to_hours_that_do_not_cover_now_release_what_they_held(
        mode: bool, tmp_path: Path, mailbox: Mailbox) -> None:
    clock = Clock(datetime(2026, 3, 10, 22, 30, tzinfo=UTC))  # 23:30 in Berlin
    start = datetime(2026, 3, 11, 9, 30, tzinfo=UTC)  # 10:30 in Berlin: its reminder is for 10:15 there

    async def quiet(hours: dict[str, str] | None) -> None:
        put = await n.client.put("/notifications/preferences", headers=headers("driver_a"),
                                 json={"quiet_hours": hours})
        assert put.status_code == 200, put.text

    async with started(tmp_path, mode, smtp(mailbox), clock) as n:
        await n.publish(driver(zone="Europe/Berlin"))
        await known(n, 1)
        await quiet({"start": "22:00", "end": "07:00"})
        await n.publish(PaymentCompleted(payment_id="p-1", account_id="acc-driver-a", amount=Decimal("3.00"),
                                         currency="EUR", completed_at=clock.at),
                        Reserved(reservation_id="r-1", slot_id="slot-1", site_id="site-1", bay_id="b1", bay_type="ev",
                                 vehicle_id="v-1", owner_id="acc-driver-a", starts_at=start,
                                 ends_at=start + timedelta(hours=1), reserved_at=clock.at))
        await known(n, 3)
        await asyncio.sleep(0.3)
        assert mailbox.messages == []  # the receipt and the confirmation wait for 07:00
        await quiet({"start": "01:00", "end": "02:00"})  # no longer covers 23:30
        await eventually(lambda: sorted(mailbox.subjects()) == ["Payment received", "Reservation confirmed"],
                         what="what was held, at the next poll")
        await quiet({"start": "10:00", "end": "11:00"})  # now covers the reminder's time: it waits until 11:00
        clock.at = start - timedelta(minutes=15)
        await asyncio.sleep(0.3)
        assert len(mailbox.messages) == 2, "the reminder is for 10:15, but quiet hours hold it"
        await quiet(None)  # none at all: the reminder is due now, at its own time
        await eventually(lambda: len(mailbox.messages) == 3, what="the reminder")
        assert mailbox.subjects()[2] == "Your reservation starts soon"


async def test_a_reservation_reminder_comes_15_minutes_before_unless_cancelled(
        mode: bool, tmp_path: Path, mailbox: Mailbox) -> None:
    clock = Clock(datetime(2026, 3, 10, 8, 0, tzinfo=UTC))
    start = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)

    def reservation(rid: str) -> dict[str, object]:
        return {"reservation_id": rid, "slot_id": "slot-1", "site_id": "site-1", "bay_id": "b1", "bay_type": "ev",
                "vehicle_id": "v-1", "owner_id": "acc-driver-a", "starts_at": start,
                "ends_at": start + timedelta(hours=2)}

    async with started(tmp_path, mode, smtp(mailbox), clock) as n:
        await n.publish(driver())
        await known(n, 1)
        await n.publish(Reserved(**reservation("r-1"), reserved_at=clock.at),  # type: ignore[arg-type]
                        Reserved(**reservation("r-2"), reserved_at=clock.at))  # type: ignore[arg-type]
        await eventually(lambda: len(mailbox.messages) == 2, what="two confirmations")
        await n.publish(Cancelled(**reservation("r-2"), cancelled_at=clock.at))  # type: ignore[arg-type]
        await eventually(lambda: len(mailbox.messages) == 3, what="the cancellation")
        clock.at = start - timedelta(minutes=15)
        await eventually(lambda: len(mailbox.messages) == 4, what="the reminder")
        await asyncio.sleep(0.3)
        assert mailbox.subjects() == ["Reservation confirmed", "Reservation confirmed", "Reservation cancelled",
                                      "Your reservation starts soon"]
        assert len(mailbox.messages) == 4  # r-2's reminder was withdrawn
