"""OCPP 1.6 payload validation, compiled: the official JSON schemas that ship with the ``ocpp``
library, turned into Python functions once, at start-up.

The ``ocpp`` library checks each payload with ``jsonschema``'s Draft4Validator, interpreting the
schema anew for every message, in a thread pool. It is where a bare central system spends most of
its time. The verdict here is the library's, only faster:

* the same files (``ocpp/v16/schemas/*.json``), read by the same rules: Draft 4 for every file,
  whatever its ``$schema`` says (``1.0`` is not an ``integer``, ``true`` is not a number);
  ``format`` not asserted (Draft4Validator runs without a format checker); nothing filled in;
* the three schemas the library parses with ``Decimal`` for ``multipleOf`` (SetChargingProfile,
  RemoteStartTransaction, GetCompositeSchedule.conf) are left to the library: :meth:`Schemas.is_valid`
  answers None for them;
* only the verdict comes from here. An invalid payload is handed back to the library's validator
  so the CALLERROR (code and description) is exactly the library's.

The 1.6 schemas use few keywords (``type``, ``properties``, ``required``, ``additionalProperties:
false``, string ``enum``, ``maxLength``, ``items``, ``minItems``, local ``$ref``). A schema that keeps to
them becomes a tree of small closures (:func:`build_validator`), one per schema node, each answering
True or False: a dictionary lookup per property, set lookups for enums and unknown properties, no
exceptions on the way, no generated source. A schema with anything else is compiled by fastjsonschema
instead (:func:`compile_schema`).

Nothing is compiled at import time: the composition root (:class:`edge.app.Edge`) calls
:func:`compile_schemas` for the actions of the fast path and hands the result to the OCPP server.

``tests/unit/edge/test_validation.py`` runs both validators over valid and invalid payloads of
every schema and requires the same verdict.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import fastjsonschema
import ocpp

SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"

# ocpp.messages._validate_payload parses these with parse_float=Decimal; keep them on its path.
LIBRARY_ONLY = frozenset({"SetChargingProfile", "RemoteStartTransaction", "GetCompositeScheduleResponse"})

Validator = Callable[[Any], bool]

_DRAFT_4 = "http://json-schema.org/draft-04/schema#"


def schema_name(action: str, *, response: bool = False) -> str:
    """The file name (without ``.json``) of a 1.6 request or response schema."""
    return f"{action}Response" if response else action


def compile_schema(schema: dict[str, Any]) -> Validator:
    """One function answering whether a payload is valid under ``schema``, read as Draft 4: the
    closures of :func:`build_validator`, or fastjsonschema's for a schema outside their subset."""
    built = build_validator(schema)
    if built is not None:
        return built
    # The library reads every file as Draft 4 (the security extension's files say draft-06, where
    # 0.0 would be an integer), and Draft4Validator without a format checker does not assert
    # "format"; neither do we.
    checker = fastjsonschema.compile({**schema, "$schema": _DRAFT_4}, use_default=False, use_formats=False,
                                     detailed_exceptions=False)

    def verdict(payload: Any) -> bool:
        try:
            checker(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return verdict


def compile_validator(name: str) -> Validator | None:
    """The validator of the shipped schema ``name`` (see :func:`schema_name`), or None when the library
    keeps it (:data:`LIBRARY_ONLY`) or there is no such schema."""
    if name in LIBRARY_ONLY:
        return None
    try:
        schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    return compile_schema(schema)


class Schemas:
    """The compiled request and response schemas of some 1.6 actions (see :func:`compile_schemas`)."""

    def __init__(self, validators: Mapping[tuple[str, bool], Validator | None]) -> None:
        self._validators = dict(validators)  # (action, response) -> validator

    def is_valid(self, action: str, payload: Any, *, response: bool = False) -> bool | None:
        """Whether ``payload`` passes the 1.6 schema of ``action``; None when there is no compiled
        validator for it (an action not compiled, unknown, or one the library validates with Decimal)."""
        validator = self._validators.get((action, response))
        if validator is None:
            return None
        return validator(payload)


def compile_schemas(actions: Iterable[str]) -> Schemas:
    """Compile the request and response schemas of ``actions``, once, at start-up."""
    return Schemas({(action, response): compile_validator(schema_name(action, response=response))
                    for action in actions for response in (False, True)})


# --- the subset as closures: Draft 4 semantics as jsonschema's Draft4Validator applies them ------

_TYPES: dict[str, Validator] = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),  # a tuple is not a JSON array
    "string": lambda value: isinstance(value, str),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),  # Draft 4: 1.0 is no integer
    "boolean": lambda value: isinstance(value, bool),
}
_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "enum", "maxLength", "items",
                       "minItems", "additionalItems", "$ref"})
_ANNOTATIONS = frozenset({"$schema", "$id", "id", "title", "description", "definitions", "javaType", "format",
                          "default"})  # "format" is not asserted (no format checker)
_MISSING = object()

# A keyword check for the instances of one type: strict (the node's "type" is that type, so any other
# value fails) or not (no "type": a value of another type passes; a keyword applies only to its own).
_KeywordCheck = Callable[[bool], Validator]


class _Unsupported(Exception):
    """A schema outside the subset :func:`build_validator` handles."""


def build_validator(schema: dict[str, Any]) -> Validator | None:
    """A validator made of plain Python checks, or None for a schema outside the subset."""
    definitions = schema.get("definitions", {})
    if not isinstance(definitions, dict):
        return None
    try:
        check = _Builder(definitions).node(schema)
    except _Unsupported:
        return None
    return check if check is not None else _anything


def _anything(value: Any) -> bool:
    return True


class _Builder:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self._resolving: list[str] = []

    def node(self, node: Any) -> Validator | None:
        """The check of one schema node, or None when every value passes it."""
        if not isinstance(node, dict) or not set(node) <= _KEYWORDS | _ANNOTATIONS:
            raise _Unsupported(node)
        if "$ref" in node:  # Draft 4: the siblings of $ref are ignored
            return self._ref(node["$ref"])
        kind = node.get("type")
        if kind is not None and (not isinstance(kind, str) or kind not in _TYPES):
            raise _Unsupported(kind)
        checks: list[Validator] = []
        typed = False  # whether a check below already tests the node's type
        for applies_to, keywords in (("object", self._object(node)), ("array", self._array(node)),
                                     ("string", self._string(node))):
            if keywords is None or kind not in (None, applies_to):
                continue
            checks.append(keywords(kind == applies_to))
            typed = typed or kind == applies_to
        if "enum" in node:
            exact, enum = self._enum(node["enum"])
            if kind == "string" and not checks:  # the commonest leaf of all, in one check
                checks.append(lambda value: value in exact if type(value) is str
                              else isinstance(value, str) and value in enum)
                typed = True
            else:
                # A str (exactly) is looked up in a set; anything else is compared with == like the library
                # does (a str-valued Enum member hashes by its name, not its value).
                checks.append(lambda value: value in exact if type(value) is str else value in enum)
        if kind is not None and not typed:
            checks.insert(0, _TYPES[kind])
        return _all(checks)

    def _ref(self, ref: Any) -> Validator | None:
        prefix = "#/definitions/"
        if not isinstance(ref, str) or not ref.startswith(prefix) or ref[len(prefix):] not in self.definitions \
                or ref in self._resolving:
            raise _Unsupported(ref)
        self._resolving.append(ref)
        try:
            return self.node(self.definitions[ref[len(prefix):]])
        finally:
            self._resolving.pop()

    def _str_verdict(self, node: dict[str, Any]) -> frozenset[str] | Literal[True] | None:
        """The strings (exactly ``str``) a property's node accepts, for a node whose verdict on one is a set
        lookup: True for all of them, or the set; None when it takes more (``maxLength``). Object and array
        keywords do not apply to a string."""
        while "$ref" in node:
            node = self.definitions[node["$ref"][len("#/definitions/"):]]  # checked by node() already
        if "maxLength" in node:
            return None
        if node.get("type") not in (None, "string"):
            return frozenset()
        return frozenset(node["enum"]) if "enum" in node else True

    @staticmethod
    def _enum(values: Any) -> tuple[frozenset[str], tuple[str, ...]]:
        if not isinstance(values, list) or not all(type(value) is str for value in values):
            raise _Unsupported(values)
        return frozenset(values), tuple(values)

    def _object(self, node: dict[str, Any]) -> _KeywordCheck | None:
        properties = node.get("properties", {})
        required = node.get("required", [])
        additional = node.get("additionalProperties", True)
        if not isinstance(properties, dict) or not isinstance(required, list) \
                or not all(isinstance(key, str) for key in required) or not isinstance(additional, bool):
            raise _Unsupported(node)
        known = None if additional else frozenset(properties)
        needed = tuple(required)
        fields = tuple((key, self._str_verdict(sub), check) for key, sub in properties.items()
                       if (check := self.node(sub)) is not None)
        if known is None and not needed and not fields:
            return None

        def keywords(strict: bool) -> Validator:
            def check_object(value: Any) -> bool:
                if not isinstance(value, dict):
                    return not strict
                if known is not None and not known.issuperset(value):
                    return False
                for key in needed:
                    if key not in value:
                        return False
                for key, strings, check in fields:
                    item = value.get(key, _MISSING)
                    if item is _MISSING:
                        continue
                    if type(item) is str and strings is not None:  # most properties: no call
                        if strings is not True and item not in strings:
                            return False
                    elif not check(item):
                        return False
                return True

            return check_object

        return keywords

    def _array(self, node: dict[str, Any]) -> _KeywordCheck | None:
        items = node.get("items", {})
        if not isinstance(items, dict):  # tuple validation (and with it additionalItems)
            raise _Unsupported(items)
        least = node.get("minItems", 0)
        if type(least) is not int:
            raise _Unsupported(node)
        each = self.node(items) if "items" in node else None
        if not least and each is None:
            return None

        def keywords(strict: bool) -> Validator:
            def check_array(value: Any) -> bool:
                if not isinstance(value, list):
                    return not strict
                if len(value) < least:
                    return False
                if each is not None:
                    for item in value:
                        if not each(item):
                            return False
                return True

            return check_array

        return keywords

    @staticmethod
    def _string(node: dict[str, Any]) -> _KeywordCheck | None:
        if "maxLength" not in node:
            return None
        limit = node["maxLength"]
        if type(limit) is not int:
            raise _Unsupported(node)

        def keywords(strict: bool) -> Validator:
            if strict:
                return lambda value: isinstance(value, str) and len(value) <= limit
            return lambda value: not isinstance(value, str) or len(value) <= limit

        return keywords


def _all(checks: list[Validator]) -> Validator | None:
    if not checks:
        return None
    if len(checks) == 1:
        return checks[0]
    every = tuple(checks)

    def check_all(value: Any) -> bool:
        return all(check(value) for check in every)

    return check_all
