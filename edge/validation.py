"""OCPP 1.6 payload validation, compiled: the official JSON schemas that ship with the ``ocpp``
library, turned into Python functions.

The ``ocpp`` library checks each payload with ``jsonschema``'s Draft4Validator, interpreting the
schema anew for every message, in a thread pool. It is where a bare central system spends most of
its time. The verdict here is the library's, only faster:

* the same files (``ocpp/v16/schemas/*.json``), read by the same rules: Draft 4 for every file,
  whatever its ``$schema`` says (``1.0`` is not an ``integer``, ``true`` is not a number);
  ``format`` not asserted (Draft4Validator runs without a format checker); nothing filled in
  (``use_default=False``);
* the three schemas the library parses with ``Decimal`` for ``multipleOf`` (SetChargingProfile,
  RemoteStartTransaction, GetCompositeSchedule.conf) are left to the library: :func:`is_valid`
  answers None for them;
* only the verdict comes from here. An invalid payload is handed back to the library's validator
  so the CALLERROR (code and description) is exactly the library's.

The 1.6 schemas use few keywords (``type``, ``properties``, ``required``, ``additionalProperties:
false``, string ``enum``, ``maxLength``, ``items``, ``minItems``, local ``$ref``). A schema that keeps to
them is turned into one plain function that answers True or False (:func:`_generate`): a dictionary
lookup per property, set lookups for enums and unknown properties, no exceptions on the way. A schema
with anything else is compiled by fastjsonschema instead.

``tests/unit/edge/test_validation.py`` runs both validators over valid and invalid payloads of
every schema and requires the same verdict.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import ocpp

SCHEMA_DIR = Path(ocpp.__file__).parent / "v16" / "schemas"

# ocpp.messages._validate_payload parses these with parse_float=Decimal; keep them on its path.
_LIBRARY_ONLY = frozenset({"SetChargingProfile", "RemoteStartTransaction", "GetCompositeScheduleResponse"})

Validator = Callable[[Any], bool]


def schema_name(action: str, *, response: bool = False) -> str:
    """The file name (without ``.json``) of a 1.6 request or response schema."""
    return f"{action}Response" if response else action


@functools.cache
def _compiled(name: str) -> Validator | None:
    if name in _LIBRARY_ONLY:
        return None
    path = SCHEMA_DIR / f"{name}.json"
    try:
        schema = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    generated = _generate(schema, name)
    if generated is not None:
        return generated
    # The library reads every file as Draft 4 (the security extension's files say draft-06, where
    # 0.0 would be an integer), and Draft4Validator without a format checker does not assert
    # "format"; neither do we.
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    checker = fastjsonschema.compile(schema, use_default=False, use_formats=False, detailed_exceptions=False)

    def verdict(payload: Any) -> bool:
        try:
            checker(payload)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return verdict


# --- the generator: Draft 4 semantics as jsonschema's Draft4Validator applies them -------------

_TYPE_TESTS = {
    "object": "isinstance({0}, dict)",
    "array": "isinstance({0}, list)",  # a tuple is not a JSON array
    "string": "isinstance({0}, str)",
    "integer": "(isinstance({0}, int) and not isinstance({0}, bool))",  # Draft 4: 1.0 is no integer
    "boolean": "isinstance({0}, bool)",
}
_KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "enum", "maxLength", "items",
                       "minItems", "additionalItems", "$ref"})
_ANNOTATIONS = frozenset({"$schema", "$id", "id", "title", "description", "definitions", "javaType", "format",
                          "default"})  # "format" is not asserted (no format checker)


class _Unsupported(Exception):
    """A schema outside the subset the generator handles."""


class _Source:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self.constants: dict[str, Any] = {}
        self._names = 0
        self._resolving: list[str] = []

    def name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def constant(self, value: Any) -> str:
        name = self.name("c")
        self.constants[name] = value
        return name

    def checks(self, node: Any, var: str) -> list[str]:
        """Statements that ``return False`` unless ``var`` is valid under ``node``."""
        if not isinstance(node, dict) or not set(node) <= _KEYWORDS | _ANNOTATIONS:
            raise _Unsupported(node)
        if "$ref" in node:  # Draft 4: the siblings of $ref are ignored
            ref = node["$ref"]
            prefix = "#/definitions/"
            if not isinstance(ref, str) or not ref.startswith(prefix) or ref[len(prefix):] not in self.definitions \
                    or ref in self._resolving:
                raise _Unsupported(ref)
            self._resolving.append(ref)
            try:
                return self.checks(self.definitions[ref[len(prefix):]], var)
            finally:
                self._resolving.pop()
        lines: list[str] = []
        kind = node.get("type")
        if kind is not None:
            if not isinstance(kind, str) or kind not in _TYPE_TESTS:
                raise _Unsupported(kind)
            lines.append(f"if not {_TYPE_TESTS[kind].format(var)}: return False")
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list) or not all(type(value) is str for value in values):
                raise _Unsupported(values)
            # A str (exactly) is looked up in a set; anything else is compared with == like the library
            # does (a str-valued Enum member hashes by its name, not its value).
            exact, other = self.constant(frozenset(values)), self.constant(tuple(values))
            lines.append(f"if not (({var} in {exact}) if type({var}) is str else ({var} in {other})): return False")
        self._guarded(lines, kind, "object", var, self._object_checks(node, var))
        self._guarded(lines, kind, "array", var, self._array_checks(node, var))
        self._guarded(lines, kind, "string", var, self._string_checks(node, var))
        return lines

    @staticmethod
    def _guarded(lines: list[str], kind: str | None, applies_to: str, var: str, checks: list[str]) -> None:
        # A keyword applies only to instances of its type; "type" itself is checked above, and no
        # instance is of two of these types (a str, dict or list subclass cannot be another of them).
        if not checks or (kind is not None and kind != applies_to):
            return
        if kind == applies_to:
            lines.extend(checks)
        else:
            lines.append(f"if {_TYPE_TESTS[applies_to].format(var)}:")
            lines.extend("    " + line for line in checks)

    def _object_checks(self, node: dict[str, Any], var: str) -> list[str]:
        lines: list[str] = []
        properties = node.get("properties", {})
        required = node.get("required", [])
        additional = node.get("additionalProperties", True)
        if not isinstance(properties, dict) or not isinstance(required, list) \
                or not all(isinstance(key, str) for key in required) or not isinstance(additional, bool):
            raise _Unsupported(node)
        if not additional:
            lines.append(f"if not {self.constant(frozenset(properties))}.issuperset({var}): return False")
        if required:
            lines.append("if " + " or ".join(f"{key!r} not in {var}" for key in required) + ": return False")
        for key, subschema in properties.items():
            item = self.name("v")
            checks = self.checks(subschema, item)
            if not checks:
                continue
            if key in required:
                lines.append(f"{item} = {var}[{key!r}]")
                lines.extend(checks)
            else:
                lines.append(f"{item} = {var}.get({key!r}, _MISSING)")
                lines.append(f"if {item} is not _MISSING:")
                lines.extend("    " + line for line in checks)
        return lines

    def _array_checks(self, node: dict[str, Any], var: str) -> list[str]:
        lines: list[str] = []
        items = node.get("items", {})
        if not isinstance(items, dict):  # tuple validation (and with it additionalItems)
            raise _Unsupported(items)
        if "minItems" in node:
            if type(node["minItems"]) is not int:
                raise _Unsupported(node)
            lines.append(f"if len({var}) < {node['minItems']}: return False")
        if "items" in node:
            item = self.name("v")
            checks = self.checks(items, item)
            if checks:
                lines.append(f"for {item} in {var}:")
                lines.extend("    " + line for line in checks)
        return lines

    def _string_checks(self, node: dict[str, Any], var: str) -> list[str]:
        if "maxLength" not in node:
            return []
        if type(node["maxLength"]) is not int:
            raise _Unsupported(node)
        return [f"if len({var}) > {node['maxLength']}: return False"]


def _generate(schema: dict[str, Any], name: str) -> Validator | None:
    """One function answering whether a payload is valid, or None for a schema outside the subset."""
    definitions = schema.get("definitions", {})
    if not isinstance(definitions, dict):
        return None
    source = _Source(definitions)
    try:
        body = source.checks(schema, "payload")
    except _Unsupported:
        return None
    code = "\n".join(["def validate(payload):", *("    " + line for line in body), "    return True"])
    namespace: dict[str, Any] = {"_MISSING": _MISSING, **source.constants}
    exec(compile(code, f"<OCPP 1.6 schema {name}>", "exec"), namespace)  # generated from the schema files above
    validate: Validator = namespace["validate"]
    validate.__doc__ = code  # for the curious reader of a verdict
    return validate


_MISSING = object()


def is_valid(action: str, payload: Any, *, response: bool = False) -> bool | None:
    """Whether ``payload`` passes the 1.6 schema of ``action``; None when there is no compiled
    validator for it (unknown action, or one the library validates with Decimal)."""
    validator = _compiled(schema_name(action, response=response))
    if validator is None:
        return None
    return validator(payload)


def warm_up(actions: Any) -> None:
    """Compile the request and response validators of ``actions`` now, not on the first message."""
    for action in actions:
        _compiled(schema_name(action))
        _compiled(schema_name(action, response=True))
