"""The compiled OCPP 1.6 validators give the ``ocpp`` library's verdict on every schema it ships."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, _validate_payload

from edge import validation

SCHEMAS = sorted(path.stem for path in validation.SCHEMA_DIR.glob("*.json"))
COMPILED = [name for name in SCHEMAS if name not in validation.LIBRARY_ONLY]


@functools.cache
def _all_schemas() -> validation.Schemas:
    """Every shipped 1.6 schema, compiled once for the whole module."""
    return validation.compile_schemas({name.removesuffix("Response") for name in SCHEMAS})


def _library_verdict(name: str, payload: Any) -> bool:
    payload = copy.deepcopy(payload)
    message: Call | CallResult
    if name.endswith("Response"):
        message = CallResult("1", payload, action=name.removesuffix("Response"))
    else:
        message = Call("1", name, payload)
    try:
        _validate_payload(message, "1.6")
    except OCPPError:
        return False
    return True


def _our_verdict(name: str, payload: Any) -> bool | None:
    if name.endswith("Response"):
        return _all_schemas().is_valid(name.removesuffix("Response"), payload, response=True)
    return _all_schemas().is_valid(name, payload)


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False),
                  st.just(1.0), st.just(0), st.text(max_size=6), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


def _instances(schema: dict[str, Any], definitions: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values shaped by the schema, mostly valid, now and then wrong in one place."""
    if "$ref" in schema:
        schema = definitions[schema["$ref"].rsplit("/", 1)[-1]]
    kind = schema.get("type")
    shaped: st.SearchStrategy[Any]
    if "enum" in schema:
        shaped = _rarely(st.sampled_from([v.lower() for v in schema["enum"]]), st.sampled_from(schema["enum"]))
    elif kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = {key: _instances(sub, definitions) for key, sub in properties.items()}

        @st.composite
        def objects(draw: st.DrawFn) -> dict[str, Any]:
            result: dict[str, Any] = {}
            for key, strategy in fields.items():
                if key in required or draw(st.booleans()):
                    result[key] = draw(strategy)
            for key in list(result):
                if key in required and draw(st.integers(0, 30)) == 0:
                    del result[key]  # a missing required property
            if draw(st.integers(0, 12)) == 0:
                result[draw(st.sampled_from(["extra", "vendorExtension", "Id"]))] = draw(_JUNK)
            return result

        shaped = objects()
    elif kind == "array":
        shaped = st.lists(_instances(schema.get("items", {}), definitions), max_size=3)
    elif kind == "string":
        limit = schema.get("maxLength")
        if limit is not None:
            shaped = _rarely(st.just("é" * (limit + 1)), st.one_of(st.text(max_size=3), st.just("é" * limit)))
        elif schema.get("format") == "date-time":
            shaped = st.sampled_from(["2026-01-01T00:00:00Z", "1970-01-01T00:00:00.000Z", "not a time", ""])
        else:
            shaped = st.text(max_size=8)
    elif kind == "integer":
        shaped = _rarely(st.sampled_from([1.0, True, "1"]), st.integers(-(2**40), 2**40))
    elif kind == "number":
        shaped = _rarely(st.sampled_from([False, "1.5"]), st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                                                                  st.integers()))
    elif kind == "boolean":
        shaped = _rarely(st.sampled_from([0, 1]), st.booleans())
    else:
        shaped = _JUNK
    return _rarely(_JUNK, shaped)


def _rarely(wrong: st.SearchStrategy[Any], right: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``wrong`` one time in 25: most payloads are valid, or wrong in one place."""
    return st.integers(0, 24).flatmap(lambda k: wrong if k == 0 else right)


def _schema(name: str) -> dict[str, Any]:
    import json

    return dict(json.loads((validation.SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8-sig")))


@pytest.mark.parametrize("name", COMPILED)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_compiled_validator_gives_the_library_verdict(name: str, data: st.DataObject) -> None:
    schema = _schema(name)
    payload = data.draw(_instances(schema, schema.get("definitions", {})))
    assert _our_verdict(name, payload) is _library_verdict(name, payload), payload


@pytest.mark.parametrize("name", COMPILED)
def test_every_shipped_schema_compiles(name: str) -> None:
    assert _our_verdict(name, {}) is _library_verdict(name, {})


@pytest.mark.parametrize("name", sorted(validation.LIBRARY_ONLY))
def test_decimal_schemas_are_left_to_the_library(name: str) -> None:
    assert _our_verdict(name, {}) is None


METER = {"connectorId": 1, "transactionId": 7, "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [
    {"value": "12.5", "unit": "kWh", "measurand": "Energy.Active.Import.Register", "context": "Sample.Periodic",
     "location": "Outlet", "format": "Raw", "phase": "L1"}]}]}


def _meter(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(METER)
    sample = payload["meterValue"][0]["sampledValue"][0]
    for key, value in changes.items():
        target = sample if key in sample or key.startswith("s_") else payload
        key = key.removeprefix("s_")
        if value is ...:
            target.pop(key, None)
        else:
            target[key] = value
    return payload


@pytest.mark.parametrize("payload", [
    METER,
    _meter(connectorId=1.0),  # Draft 4: a float is never an integer
    _meter(connectorId=True),  # nor is a boolean
    _meter(connectorId=...),  # required
    _meter(transactionId=...),  # optional
    _meter(s_unit="Celcius"),  # the 1.6 schema's own spelling
    _meter(s_unit="Celsius"),
    _meter(s_unit="kwh"),
    _meter(s_phase="L4"),
    _meter(s_value=12.5),  # values are strings
    _meter(s_extra="x"),  # additionalProperties: false
    _meter(extra="x"),
    _meter(meterValue=[]),  # minItems 1
    {"connectorId": 1, "meterValue": [{"timestamp": "yesterday", "sampledValue": [{"value": "1"}]}]},  # format
])
def test_meter_values_edge_cases_get_the_library_verdict(payload: dict[str, Any]) -> None:
    assert _our_verdict("MeterValues", payload) is _library_verdict("MeterValues", payload)


@pytest.mark.parametrize(("name", "payload"), [
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available"}),
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available", "info": "x" * 50}),
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Available", "info": "x" * 51}),
    ("StatusNotification", {"connectorId": 0, "errorCode": "NoError", "status": "Free"}),
    ("Heartbeat", {}),
    ("Heartbeat", {"x": 1}),
    ("HeartbeatResponse", {"currentTime": "2026-01-01T00:00:00.000Z"}),
    ("HeartbeatResponse", {}),
    ("BootNotification", {"chargePointVendor": "v" * 20, "chargePointModel": "m"}),
    ("BootNotification", {"chargePointVendor": "v" * 21, "chargePointModel": "m"}),
])
def test_hot_action_edge_cases_get_the_library_verdict(name: str, payload: dict[str, Any]) -> None:
    assert _our_verdict(name, payload) is _library_verdict(name, payload)
