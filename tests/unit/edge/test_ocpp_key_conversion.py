"""The fast path's key conversion is the ``ocpp`` library's, memoised."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case

from edge.ocpp.fastpath import snake_case

_KEYS = st.one_of(st.sampled_from(["connectorId", "meterValue", "sampledValue", "value", "ocppCSMSURL", "idTagInfo",
                                   "chargePointSerialNumber", "V2XMode", "SoC", "x"]),
                  st.text(alphabet="abcXYZ_019", max_size=8))
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300)
@given(_JSON)
def test_snake_case_matches_the_library(data: Any) -> None:
    assert snake_case(data) == camel_to_snake_case(data)
