"""The event-bus contract, proven on both adapters: the in-process bus and real RabbitMQ.

Delivery is at least once on both: the bus may hand a consumer the same event id again, and
deduplication is the consumer's inbox's job (``Transaction.claim``), not the bus's.
"""

from __future__ import annotations

import asyncio

import pytest

from cloud.platform.ports import Event
from tests.integration.platform.bus_harness import BusHarness, Recorder, eventually

SETTLE = 0.3  # long enough for a wrongly repeated delivery (retry back-off is 10 ms) to show up


async def test_star_matches_one_word_and_hash_any_number_of_words(harness: BusHarness) -> None:
    bus = await harness.bus()
    one_word, any_words, exact = Recorder(), Recorder(), Recorder()
    await bus.subscribe("q.one-word", ["charging.*"], one_word)
    await bus.subscribe("q.any-words", ["charging.#"], any_words)
    await bus.subscribe("q.exact", ["charging.session.completed"], exact)

    await bus.publish(Event(name="charging.started"))
    await bus.publish(Event(name="charging.session.completed"))
    await bus.publish(Event(name="vehicle.registered"))

    await eventually(lambda: len(any_words.handled) == 2 and len(one_word.handled) == 1
                     and len(exact.handled) == 1, what="routed events")
    await asyncio.sleep(SETTLE)
    assert one_word.names() == ["charging.started"]
    assert any_words.names() == ["charging.started", "charging.session.completed"]
    assert exact.names() == ["charging.session.completed"]


async def test_a_queue_gets_an_event_once_even_when_two_of_its_patterns_match(harness: BusHarness) -> None:
    bus = await harness.bus()
    recorder = Recorder()
    await bus.subscribe("q.overlapping", ["vehicle.*", "vehicle.#", "vehicle.registered"], recorder)

    await bus.publish(Event(name="vehicle.registered"))

    await eventually(lambda: len(recorder.handled) == 1, what="the event")
    await asyncio.sleep(SETTLE)
    assert len(recorder.calls) == 1


async def test_every_bound_queue_gets_its_own_copy_of_an_event(harness: BusHarness) -> None:
    bus = await harness.bus()
    charging, analytics = Recorder(), Recorder()
    await bus.subscribe("charging.vehicle-events", ["vehicle.registered"], charging)
    await bus.subscribe("analytics.vehicle-events", ["vehicle.*"], analytics)
    event = Event(name="vehicle.registered", source="vehicles", payload={"vehicle_id": "veh-1", "id_tags": ["A"]})

    await bus.publish(event)

    await eventually(lambda: len(charging.handled) == 1 and len(analytics.handled) == 1, what="both copies")
    assert charging.handled == [event]
    assert analytics.handled == [event]


async def test_a_queue_handles_its_events_in_the_order_they_were_published(harness: BusHarness) -> None:
    bus = await harness.bus()
    recorder = Recorder()
    await bus.subscribe("q.ordered", ["parking.#"], recorder)
    events = [Event(name="parking.bay_changed", payload={"n": n}) for n in range(25)]

    for event in events:
        await bus.publish(event)

    await eventually(lambda: len(recorder.handled) == len(events), what="all events")
    assert [e.payload["n"] for e in recorder.handled] == list(range(25))


async def test_a_failing_handler_gets_the_event_again_until_it_is_handled_exactly_once(
        harness: BusHarness) -> None:
    bus = await harness.bus()
    recorder = Recorder(fail_first=2)
    await bus.subscribe("q.flaky", ["payment.*"], recorder)
    event = Event(name="payment.completed", payload={"amount": "12.50"})

    await bus.publish(event)

    await eventually(lambda: len(recorder.handled) == 1, what="the event handled")
    await asyncio.sleep(SETTLE)
    assert [call.id for call in recorder.calls] == [event.id] * 3
    assert recorder.handled == [event]
    assert await harness.parked("q.flaky") == []


async def test_a_poison_event_is_parked_at_once_and_later_events_still_flow(harness: BusHarness) -> None:
    bus = await harness.bus()
    poisoned = Recorder(poison=True)
    await bus.subscribe("q.poisoned", ["notification.*"], poisoned)
    event = Event(name="notification.requested", payload={"channel": "pigeon"})

    await bus.publish(event)
    await eventually(lambda: harness.parked("q.poisoned"), what="the event parked")

    parked = await harness.parked("q.poisoned")
    assert [(p.event_id, p.attempts) for p in parked] == [(str(event.id), 1)]
    assert parked[0].error == "payload can never be handled"  # the reason, as the handler gave it
    await asyncio.sleep(SETTLE)
    assert len(poisoned.calls) == 1, "a poison event is not retried"

    poisoned.poison = False
    follow_up = Event(name="notification.requested")
    await bus.publish(follow_up)
    await eventually(lambda: poisoned.handled == [follow_up], what="the next event handled")


async def test_an_event_whose_handler_always_fails_is_parked_after_bounded_attempts(harness: BusHarness) -> None:
    bus = await harness.bus()
    broken = Recorder(always_fail=True)
    await bus.subscribe("q.broken", ["vehicle.registered"], broken)
    event = Event(name="vehicle.registered")

    await bus.publish(event)
    await eventually(lambda: harness.parked("q.broken"), what="the event parked")

    parked = await harness.parked("q.broken")
    assert [(p.event_id, p.attempts) for p in parked] == [(str(event.id), 5)]
    assert "handler failed 5 times" in parked[0].error and "RuntimeError" in parked[0].error
    await asyncio.sleep(SETTLE)
    assert len(broken.calls) == 5, "not retried forever"


async def test_an_event_is_safe_as_soon_as_publish_returns(harness: BusHarness) -> None:
    """Embedded: the handlers have run. Broker: the event is durably queued, even with no consumer."""
    first_consumer = Recorder()
    consumer_bus = await harness.bus()
    await consumer_bus.subscribe("q.durable", ["charging.*"], first_consumer)
    await harness.stop(consumer_bus)  # broker: nobody consumes now, the queue stays
    publisher = await harness.bus()
    event = Event(name="charging.session_completed", payload={"energy_wh": 12_345})

    await publisher.publish(event)

    if not harness.has_broker:
        assert first_consumer.handled == [event]
        return
    assert first_consumer.calls == []
    await harness.stop(publisher)
    later_consumer = Recorder()
    later_bus = await harness.bus()
    await later_bus.subscribe("q.durable", ["charging.*"], later_consumer)
    await eventually(lambda: later_consumer.handled == [event], what="the event delivered to a later consumer")


async def test_the_same_event_published_twice_arrives_twice_for_the_inbox_to_dedupe(harness: BusHarness) -> None:
    bus = await harness.bus()
    recorder = Recorder()
    await bus.subscribe("q.repeated", ["vehicle.*"], recorder)
    event = Event(name="vehicle.registered")

    await bus.publish(event)
    await bus.publish(event)  # e.g. the outbox relay crashed after the confirm, before deleting its row

    await eventually(lambda: len(recorder.handled) == 2, what="two deliveries")
    assert {e.id for e in recorder.handled} == {event.id}


async def test_an_event_no_queue_is_bound_to_is_dropped_quietly(harness: BusHarness) -> None:
    bus = await harness.bus()

    await bus.publish(Event(name="parking.nobody_listens"))


async def test_names_and_patterns_without_a_literal_domain_are_refused(harness: BusHarness) -> None:
    bus = await harness.bus()

    with pytest.raises(ValueError):
        await bus.publish(Event(name="nodomain"))
    with pytest.raises(ValueError):
        await bus.subscribe("q.any", ["*.registered"], Recorder())
    with pytest.raises(ValueError):
        await bus.subscribe("q.any", ["#"], Recorder())


async def test_a_bus_is_healthy_while_started_and_not_after_close(harness: BusHarness) -> None:
    bus = await harness.bus()
    assert await bus.healthy()

    await bus.close()

    assert not await bus.healthy()
