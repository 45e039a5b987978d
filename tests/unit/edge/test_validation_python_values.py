"""The compiled validators keep the library's verdict also for Python values no JSON text produces
(our own answers are checked too), read every schema as Draft 4 does, and a schema outside their
subset goes to fastjsonschema."""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from typing import Any

import pytest
from ocpp.v16.enums import ChargePointErrorCode, ChargePointStatus, RegistrationStatus

from edge import validation
from tests.unit.edge.test_validation import _library_verdict, _our_verdict


class _Connector(enum.IntEnum):
    ONE = 1


class _Text(str):
    pass


_SAMPLE = {"value": "1", "unit": "Wh"}


@pytest.mark.parametrize(("name", "payload"), [
    ("StatusNotification", {"connectorId": _Connector.ONE, "errorCode": "NoError", "status": "Charging"}),
    ("StatusNotification", {"connectorId": 1, "errorCode": ChargePointErrorCode.no_error,
                            "status": ChargePointStatus.charging}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": _Text("Charging")}),
    ("StatusNotification", OrderedDict(connectorId=1, errorCode="NoError", status="Charging")),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": ["Charging"]}),
    ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": {"Charging": 1}}),
    ("StatusNotification", {"connectorId": 1.0, "errorCode": "NoError", "status": "Charging"}),
    ("MeterValues", {"connectorId": 1, "meterValue": ({"timestamp": "t", "sampledValue": [_SAMPLE]},)}),  # a tuple
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": (_SAMPLE,)}]}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": []}]}),
    ("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [{**_SAMPLE, 1: "x"}]}]}),
    ("BootNotificationResponse", {"currentTime": "2026-01-01T00:00:00.000Z", "interval": 30,
                                  "status": RegistrationStatus.accepted}),
    ("BootNotificationResponse", {"currentTime": "2026-01-01T00:00:00.000Z", "interval": True, "status": "Accepted"}),
    ("StatusNotification", ["connectorId"]),
    ("StatusNotification", None),
])
def test_python_values_get_the_library_verdict(name: str, payload: Any) -> None:
    assert _our_verdict(name, payload) is _library_verdict(name, payload)


def test_every_shipped_schema_is_built_from_plain_checks_not_left_to_fastjsonschema() -> None:
    names = [path.stem for path in validation.SCHEMA_DIR.glob("*.json") if path.stem not in validation.LIBRARY_ONLY]
    assert names
    for name in names:
        schema = json.loads((validation.SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8-sig"))
        assert validation.build_validator(schema) is not None, name


@pytest.mark.parametrize("schema", [
    {"type": "number"},
    {"type": ["string", "null"]},
    {"type": "string", "pattern": "^a"},
    {"type": "array", "items": [{"type": "string"}]},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"$ref": "#/definitions/missing"},
    {"definitions": {"Loop": {"$ref": "#/definitions/Loop"}}, "$ref": "#/definitions/Loop"},
])
def test_a_schema_outside_the_subset_goes_to_fastjsonschema(schema: dict[str, Any]) -> None:
    assert validation.build_validator(schema) is None


def test_fastjsonschema_reads_a_schema_outside_the_subset_as_draft_4() -> None:
    check = validation.compile_schema({"$schema": "http://json-schema.org/draft-06/schema#", "type": "object",
                                       "properties": {"n": {"type": "integer"}, "x": {"type": "number"}}})
    assert check({"n": 1, "x": 0.5}) is True
    assert check({"n": 1.0}) is False  # an integer in draft 6, not in draft 4
    assert check({"x": True}) is False


def test_ref_siblings_are_ignored_as_in_draft_4() -> None:
    check = validation.compile_schema({"definitions": {"Word": {"type": "string", "maxLength": 3}}, "type": "object",
                                       "properties": {"w": {"$ref": "#/definitions/Word", "maxLength": 1}}})
    assert check({"w": "abc"}) is True
    assert check({"w": "abcd"}) is False


def test_a_draft_6_file_is_read_as_draft_4_like_the_library_does() -> None:
    check = validation.compile_schema({"$schema": "http://json-schema.org/draft-06/schema#", "type": "integer"})
    assert check(1) is True
    assert check(1.0) is False  # an integer in draft 6, not in draft 4


@pytest.mark.parametrize(("value", "verdict"), [("Wh", True), ("kWh", False), (_Text("Wh"), True), (1, False)])
def test_a_string_property_is_judged_by_its_node_also_without_a_call(value: Any, verdict: bool) -> None:
    check = validation.compile_schema({"type": "object", "properties": {
        "unit": {"type": "string", "enum": ["Wh"]}, "n": {"type": "integer"}, "s": {"type": "string", "maxLength": 2},
        "any": {"description": "no type"}, "free": {"type": "string"}}})
    assert check({"unit": value}) is verdict
    assert check({"n": "1"}) is False and check({"s": "abc"}) is False and check({"s": "ab"}) is True
    assert check({"any": "x", "free": "y"}) is True and check({"free": 1}) is False


def test_only_the_actions_asked_for_are_compiled() -> None:
    schemas = validation.compile_schemas(["Heartbeat"])
    assert schemas.is_valid("Heartbeat", {}) is True
    assert schemas.is_valid("Heartbeat", {"currentTime": "2026-01-01T00:00:00.000Z"}, response=True) is True
    assert schemas.is_valid("Heartbeat", {}, response=True) is False
    assert schemas.is_valid("MeterValues", {}) is None  # not compiled: the library decides
    assert validation.compile_validator("NoSuchAction") is None
