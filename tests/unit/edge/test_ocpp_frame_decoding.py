"""A frame is decoded once; the decoder itself tells whether it may hold an integer SQLite cannot
store, so only such frames have their payload walked."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ocpp.codec import decode_frame, fits_sqlite
from edge.ocpp.fastpath import snake_case

_JSON: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**80), 2**80), st.floats(allow_nan=False, allow_infinity=False),
              st.text(alphabet="0123456789aé\"\\", max_size=25)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=12,
)


@settings(max_examples=400)
@given(_JSON)
def test_decoding_gives_the_json_value_and_flags_every_payload_sqlite_cannot_store(value: Any) -> None:
    text = json.dumps([2, "id", "MeterValues", value])
    for raw in (text, text.encode()):  # a text frame, and a binary one
        frame, long_integers = decode_frame(raw)
        assert frame == json.loads(text)
        if not fits_sqlite(value):
            assert long_integers  # never skips a payload that needs the walk


@pytest.mark.parametrize(("text", "flagged"), [
    ('[2,"1","MeterValues",{"connectorId":1}]', False),
    ('[2,"1","MeterValues",{"transactionId":9223372036854775808}]', True),
    ('[2,"1","MeterValues",{"transactionId":-9223372036854775809}]', True),
    ('[2,"1","MeterValues",{"idTag":"12345678901234567890"}]', False),  # digits in a string are no integer
    ('[2,"1","MeterValues",{"x":1.2345678901234567890}]', False),  # nor in a number with a fraction
])
def test_long_integers_are_flagged(text: str, flagged: bool) -> None:
    assert decode_frame(text)[1] is flagged


def test_a_binary_frame_is_decoded_too() -> None:
    frame, long_integers = decode_frame(b'[2,"1","Heartbeat",{"n":12345678901234567890}]')
    assert frame == [2, "1", "Heartbeat", {"n": 12345678901234567890}]
    assert long_integers


def test_snake_case_reuses_an_object_whose_keys_stay_and_copies_the_rest() -> None:
    sample = {"value": "1", "unit": "Wh"}
    payload = {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [sample]}]}
    converted = snake_case(payload)
    assert converted == {"connector_id": 1, "meter_value": [{"timestamp": "t", "sampled_value": [sample]}]}
    assert converted["meter_value"][0]["sampled_value"][0] is sample
    assert payload == {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [sample]}]}  # untouched
