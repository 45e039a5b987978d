"""The generated validators keep the library's verdict also for Python values no JSON text produces
(our own answers are checked too), and a schema outside their subset goes to fastjsonschema."""

from __future__ import annotations

import enum
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


def test_every_compiled_schema_is_generated_not_left_to_fastjsonschema() -> None:
    names = [path.stem for path in validation.SCHEMA_DIR.glob("*.json") if path.stem not in validation._LIBRARY_ONLY]
    assert names
    assert all(validation._compiled(name).__name__ == "validate" for name in names)  # type: ignore[union-attr]


@pytest.mark.parametrize("schema", [
    {"type": "number"},
    {"type": ["string", "null"]},
    {"type": "string", "pattern": "^a"},
    {"type": "array", "items": [{"type": "string"}]},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"$ref": "#/definitions/missing"},
])
def test_a_schema_outside_the_subset_is_not_generated(schema: dict[str, Any]) -> None:
    assert validation._generate(schema, "test") is None


def test_ref_siblings_are_ignored_as_in_draft_4() -> None:
    schema = {"definitions": {"Word": {"type": "string", "maxLength": 3}},
              "type": "object", "properties": {"w": {"$ref": "#/definitions/Word", "maxLength": 1}}}
    check = validation._generate(schema, "test")
    assert check is not None
    assert check({"w": "abc"}) is True
    assert check({"w": "abcd"}) is False
