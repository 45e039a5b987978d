"""Typed events: a consumer reads any minor version of a major it knows and refuses the rest with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from cloud.contracts import CATALOGUE, Event, EventBody, InvalidPayload, UnknownEvent, UnknownMajor, decode, event
from cloud.contracts.catalogue import DOCUMENT, render
from cloud.contracts.vehicles import VehicleRegistered
from cloud.platform.consumers import TypedConsumer
from cloud.platform.ports import PoisonEvent
from cloud.registry import specs


def registered_event(version: str = "1.0", **payload: object) -> Event:
    body = {"vehicle_id": "veh-1", "plate": "EV 1", "id_tags": ["TAG1"], **payload}
    return Event(name="vehicle.registered", version=version, source="vehicles", payload=body)


def test_a_consumer_reads_a_newer_minor_version_and_ignores_its_new_fields() -> None:
    received = decode(registered_event("1.7", colour="red"), [VehicleRegistered])
    assert received.body == VehicleRegistered(vehicle_id="veh-1", plate="EV 1", id_tags=["TAG1"])
    assert received.version == "1.7"


def test_an_unknown_major_version_is_refused_with_the_versions_the_consumer_reads() -> None:
    with pytest.raises(UnknownMajor, match=r"vehicle\.registered version 2\.0: this consumer reads major version"):
        decode(registered_event("2.0"), [VehicleRegistered])


def test_a_payload_that_fails_its_schema_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidPayload, match="id_tags: Field required"):
        decode(Event(name="vehicle.registered", payload={"vehicle_id": "veh-1", "plate": "EV 1"}), [VehicleRegistered])


def test_an_event_published_before_versions_existed_reads_as_1_0() -> None:
    legacy = Event.model_validate({"name": "vehicle.registered", "source": "vehicles",
                                   "payload": {"vehicle_id": "v", "plate": "P", "id_tags": []}})
    assert decode(legacy, [VehicleRegistered]).body.vehicle_id == "v"


def test_a_vehicle_registered_of_1_2_reads_with_1_3_as_make_and_battery_not_known() -> None:
    body = decode(registered_event("1.2", owner_id="acc-1", type="hybrid"), [VehicleRegistered]).body
    assert isinstance(body, VehicleRegistered)
    assert (body.type, body.make, body.model, body.battery_kwh) == ("hybrid", None, None, None)


def test_a_battery_size_travels_as_a_decimal_string_and_reads_back_exactly() -> None:
    body = VehicleRegistered(vehicle_id="veh-1", plate="EV 1", id_tags=[], make="Kia", battery_kwh=Decimal("77.4"))
    wire = Event.of(body, source="vehicles")
    assert (wire.payload["make"], wire.payload["battery_kwh"]) == ("Kia", "77.4")
    assert decode(Event.model_validate_json(wire.model_dump_json()), [VehicleRegistered]).body == body


def test_only_declared_events_can_be_published() -> None:
    class Undeclared(EventBody):
        x: int

    with pytest.raises(UnknownEvent):
        Event.of(Undeclared(x=1), source="test")


def test_an_event_name_and_major_are_declared_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        @event("vehicle.registered", "1.1", "again")
        class Again(EventBody):
            pass
    assert CATALOGUE["vehicle.registered"][1] is VehicleRegistered


def test_the_envelope_carries_the_name_version_and_a_json_payload() -> None:
    body = VehicleRegistered(vehicle_id="veh-1", plate="EV 1", id_tags=["A"])
    wire = Event.of(body, source="vehicles", occurred_at=datetime(2026, 12, 1, tzinfo=UTC))
    assert (wire.name, wire.version, wire.exchange, wire.source) == ("vehicle.registered", "1.3", "vehicle.events",
                                                                     "vehicles")
    assert Event.model_validate_json(wire.model_dump_json()) == wire


async def test_a_typed_consumer_turns_contract_breaks_into_poison_with_the_reason() -> None:
    seen: list[str] = []

    async def handle(received: object) -> None:
        seen.append(received.body.vehicle_id)  # type: ignore[attr-defined]

    consumer = TypedConsumer("charging.vehicle-events", {VehicleRegistered: handle})
    assert consumer.routing_keys == ["vehicle.registered"]
    with pytest.raises(PoisonEvent, match="major version"):
        await consumer(registered_event("3.0"))
    with pytest.raises(PoisonEvent, match="fails its schema"):
        await consumer(registered_event(id_tags="not a list"))
    await consumer(registered_event("1.2"))
    assert seen == ["veh-1"]


def test_every_event_a_service_publishes_or_consumes_is_declared() -> None:
    declared = {model for majors in CATALOGUE.values() for model in majors.values()}
    for spec in specs():
        assert set(spec.publishes) <= declared, spec.name
        assert set(spec.consumes) <= declared, spec.name


def test_every_declared_event_has_one_producer() -> None:
    producers: dict[str, list[str]] = {}
    for spec in specs():
        for model in spec.publishes:
            producers.setdefault(f"{model.NAME} v{model.major()}", []).append(spec.name)
    declared = {f"{name} v{major}" for name, majors in CATALOGUE.items() for major in majors}
    assert {name: owners for name, owners in producers.items() if len(owners) != 1} == {}
    assert declared == set(producers), "an event nobody publishes, or published by nobody"


def test_the_events_catalogue_is_up_to_date() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == render(), "run `python -m cloud.contracts.catalogue`"
