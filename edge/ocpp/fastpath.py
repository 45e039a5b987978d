"""The fast path of the hot actions: what the ``ocpp`` library does around a handler, made cheap.

MeterValues, Heartbeat and StatusNotification are the CALLs every charger sends all day long. For
an accepted charger whose payload the compiled 1.6 schema (:mod:`edge.validation`) accepts, the
connection calls the same ``@on`` handler and sends the same answer as the library would, but:

* the schema is compiled, not interpreted in a thread pool;
* the camelCase -> snake_case conversion of the payload is the library's, memoised
  (:func:`snake_case`), and copies only the objects it has to;
* the handler's result dataclass becomes its camelCase payload without a deep copy when it holds no
  nested value (:func:`answer_payload`).

A payload the compiled schema refuses goes down the library's path, so the CALLERROR is the
library's, word for word.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.v16.enums import Action

FAST_ACTIONS = frozenset({Action.meter_values.value, Action.heartbeat.value, Action.status_notification.value})
"""The CALLs every charger sends all day long; see the module docstring."""


@functools.lru_cache(maxsize=4096)
def _snake_key(key: str) -> str:
    # The library's own conversion, memoised: a 1.6 schema admits only its own property names.
    return next(iter(camel_to_snake_case({key: None})))


@functools.lru_cache(maxsize=256)
def _camel_key(key: str) -> str:
    return next(iter(snake_to_camel_case({key: None})))


class _SnakeNames(dict[str, str]):
    """camelCase key -> the library's snake_case name, learnt on first use."""

    def __missing__(self, key: str) -> str:
        if len(self) >= 4096:  # bounded: a charger may send keys the schema refuses
            self.clear()
        name = self[key] = _snake_key(key)
        return name


_SNAKE = _SnakeNames()
_CONTAINERS = (dict, list)


def snake_case(data: Any) -> Any:
    """:func:`ocpp.charge_point.camel_to_snake_case` for JSON data, with memoised names.

    An object whose keys are already snake_case and that holds no object or array is returned as it
    is, not copied (the innermost objects of a MeterValues: value, unit, measurand, ...): the fewer
    containers a CALL allocates, the rarer the garbage collector's passes.
    """
    if type(data) is dict:
        names = _SNAKE
        for key, value in data.items():
            if type(value) in _CONTAINERS or names[key] != key:
                return {names[key]: snake_case(value) if type(value) in _CONTAINERS else value
                        for key, value in data.items()}
        return data
    if type(data) is list:
        return [snake_case(value) if type(value) in _CONTAINERS else value for value in data]
    return data


def answer_payload(result: Any) -> dict[str, Any]:
    """What the library sends for a handler's result dataclass (camelCase, Nones removed)."""
    fields = _result_fields(type(result))
    if not fields:
        return {}
    values = [(camel, getattr(result, name)) for name, camel in fields]
    if any(isinstance(value, list | dict) or dataclasses.is_dataclass(value) for _, value in values):
        return dict(snake_to_camel_case(remove_nones(serialize_as_dict(result))))
    return {camel: value for camel, value in values if value is not None}


def _result_fields(result_type: type[Any]) -> tuple[tuple[str, str], ...]:
    """(snake_case, camelCase) names of a result dataclass's fields, once per class."""
    fields = _RESULT_FIELDS.get(result_type)
    if fields is None:
        fields = _RESULT_FIELDS[result_type] = tuple((field.name, _camel_key(field.name))
                                                     for field in dataclasses.fields(result_type))
    return fields


_RESULT_FIELDS: dict[type[Any], tuple[tuple[str, str], ...]] = {}
