"""mqtt/asyncapi.yaml says exactly what mqtt/topics.py, payloads.py and envelope.py say."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mqtt import gen_asyncapi
from mqtt.envelope import Command, CommandResult, Envelope
from mqtt.payloads import (
    COMMAND_BODIES,
    UPLINK_BODIES,
    AuthListEntry,
    AuthListUpdate,
    BayOccupancy,
    CommandStatus,
    IdTagStatus,
    SessionStopped,
)
from mqtt.topics import QOS, UP_CATEGORIES, Topics

DOCUMENT = Path(gen_asyncapi.__file__).with_name("asyncapi.yaml")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


def test_committed_document_is_what_the_generator_writes_today() -> None:
    assert DOCUMENT.read_text(encoding="utf-8") == gen_asyncapi.render(), (
        "mqtt/asyncapi.yaml is out of date: run `python -m mqtt.gen_asyncapi`")


def test_generator_check_mode_agrees() -> None:
    assert gen_asyncapi.main(["--check"]) == 0


def test_one_channel_per_uplink_category_and_one_for_commands(document: dict[str, Any]) -> None:
    topics = Topics(root="evpark")
    expected = {f"{{root}}/sites/{{siteId}}/up/{category}" for category in UP_CATEGORIES}
    expected.add("{root}/sites/{siteId}/down/command")
    assert set(document["channels"]) == expected
    # the names are the real topics with the root and site id as parameters
    assert topics.up("S1", "session") == "{root}/sites/{siteId}/up/session".format(root="evpark", siteId="S1")
    assert topics.down("S1") == "{root}/sites/{siteId}/down/command".format(root="evpark", siteId="S1")


def test_every_operation_is_qos_1(document: dict[str, Any]) -> None:
    for channel in document["channels"].values():
        for operation in ("publish", "subscribe"):
            if operation in channel:
                assert channel[operation]["bindings"]["mqtt"]["qos"] == QOS == 1


def test_every_body_type_is_a_message_with_its_schema(document: dict[str, Any]) -> None:
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    assert set(messages) == set(UPLINK_BODIES) | set(COMMAND_BODIES)
    for message_type, model in {**UPLINK_BODIES, **COMMAND_BODIES}.items():
        assert model.__name__ in schemas
        assert messages[message_type]["payload"]["allOf"][1]["properties"]["type"]["const"] == message_type


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for item in node for r in refs(item)]
        return []

    for ref in refs(document):
        assert ref.startswith("#/"), ref
        node: Any = document
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def _validate(document: dict[str, Any], message_type: str, payload: dict[str, Any]) -> None:
    schema = {"allOf": [document["components"]["messages"][message_type]["payload"]],
              "components": document["components"]}
    jsonschema.validate(payload, schema)


def test_real_envelopes_and_commands_validate_against_the_document(document: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    stopped = SessionStopped(charger_id="CP-1", transaction_id=7, meter_start_wh=100, meter_stop_wh=7600,
                             energy_wh=7500, stopped_at=now)
    _validate(document, "session.stopped", Envelope.wrap("S1", 3, stopped).model_dump(mode="json"))
    _validate(document, "session.stopped",
              Envelope.wrap("S1", 3, stopped, store_id=uuid.uuid4().hex).model_dump(mode="json"))
    bay = BayOccupancy(bay_id="B-12", state="occupied", changed_at=now)
    _validate(document, "bay.occupancy", Envelope.wrap("S1", 4, bay).model_dump(mode="json"))
    result = CommandResult(command_id=uuid.uuid4(), command_type="authlist.update",
                           status=CommandStatus.ACCEPTED)
    _validate(document, "command.result", Envelope.wrap("S1", 5, result).model_dump(mode="json"))  # type: ignore[arg-type]
    update = AuthListUpdate(version=2, entries=[AuthListEntry(id_tag="TAG-1", status=IdTagStatus.ACCEPTED)])
    _validate(document, "authlist.update",
              Command.new("S1", update, ttl=timedelta(minutes=1)).model_dump(mode="json"))


def test_the_document_rejects_what_the_models_reject(document: dict[str, Any]) -> None:
    envelope = Envelope.wrap("S1", 1, BayOccupancy(bay_id="B-1", state="free", changed_at=datetime.now(UTC)))
    wrong_state = envelope.model_dump(mode="json")
    wrong_state["body"]["state"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        _validate(document, "bay.occupancy", wrong_state)
    extra = envelope.model_dump(mode="json") | {"unexpected": 1}
    with pytest.raises(jsonschema.ValidationError):
        _validate(document, "bay.occupancy", extra)
