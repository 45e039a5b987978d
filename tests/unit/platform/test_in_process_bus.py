"""InProcessBus specifics: what it keeps when it parks, competing handlers, wire-like copies."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloud.platform.events import InProcessBus
from cloud.platform.ports import Event, PoisonEvent


async def test_publish_returns_after_the_handler_ran_and_parks_with_the_error_and_attempts() -> None:
    bus = InProcessBus(retry_delay=0)
    seen: list[Event] = []

    async def broken(event: Event) -> None:
        seen.append(event)
        raise KeyError("vehicle_id")

    await bus.subscribe("charging.vehicle-events", ["vehicle.*"], broken)
    event = Event(name="vehicle.registered")

    await bus.publish(event)  # does not raise: the failure is the consumer's, and it is parked

    assert len(seen) == 5
    [parked] = bus.parked["charging.vehicle-events"]
    assert (parked.event, parked.attempts) == (event, 5)
    assert "KeyError" in parked.error


async def test_a_poison_event_is_parked_after_one_call() -> None:
    bus = InProcessBus()
    calls: list[Event] = []

    async def refuse(event: Event) -> None:
        calls.append(event)
        raise PoisonEvent("no vehicle_id")

    await bus.subscribe("q", ["vehicle.*"], refuse)
    await bus.publish(Event(name="vehicle.registered"))

    assert len(calls) == 1
    assert bus.parked["q"][0].attempts == 1


async def test_two_subscribers_of_one_queue_compete_for_its_events() -> None:
    bus = InProcessBus()
    first: list[Event] = []
    second: list[Event] = []

    async def one(event: Event) -> None:
        first.append(event)

    async def two(event: Event) -> None:
        second.append(event)

    await bus.subscribe("q", ["parking.*"], one)
    await bus.subscribe("q", ["parking.*"], two)
    for _ in range(4):
        await bus.publish(Event(name="parking.bay_changed"))

    assert (len(first), len(second)) == (2, 2)


async def test_each_queue_gets_a_copy_decoded_from_json_like_from_a_broker() -> None:
    bus = InProcessBus()
    received: list[Event] = []

    async def mutate(event: Event) -> None:
        event.payload["touched"] = True
        received.append(event)

    await bus.subscribe("a", ["payment.*"], mutate)
    await bus.subscribe("b", ["payment.*"], mutate)
    original = Event(name="payment.completed", payload={"amount": Decimal("12.50")})

    await bus.publish(original)

    assert [e.payload["amount"] for e in received] == ["12.50", "12.50"]
    assert "touched" not in original.payload
    assert received[0].payload is not received[1].payload


async def test_a_handler_may_publish_on_the_same_bus() -> None:
    bus = InProcessBus()
    chain: list[str] = []

    async def react(event: Event) -> None:
        chain.append(event.name)
        if event.name == "charging.session_completed":
            await bus.publish(Event(name="payment.requested"))

    await bus.subscribe("q", ["charging.*", "payment.*"], react)
    await bus.publish(Event(name="charging.session_completed"))

    assert chain == ["charging.session_completed", "payment.requested"]


async def test_a_closed_bus_refuses_to_publish() -> None:
    bus = InProcessBus()
    await bus.close()

    with pytest.raises(RuntimeError):
        await bus.publish(Event(name="vehicle.registered"))


async def test_nothing_ever_waits_in_a_queue_of_the_in_process_bus() -> None:
    bus = InProcessBus()

    async def handled(_event: Event) -> None:
        return None

    await bus.subscribe("analytics.events", ["vehicle.*"], handled)
    await bus.publish(Event(name="vehicle.registered"))
    assert await bus.waiting(["analytics.events"]) == {"analytics.events": 0}  # publish delivered it already
