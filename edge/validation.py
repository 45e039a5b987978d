"""OCPP 1.6 payload validation, compiled: the official JSON schemas that ship with the ``ocpp``
library, turned into Python functions by fastjsonschema.

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

Validator = Callable[[Any], Any]


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
    # The library reads every file as Draft 4 (the security extension's files say draft-06, where
    # 0.0 would be an integer), and Draft4Validator without a format checker does not assert
    # "format"; neither do we.
    schema["$schema"] = "http://json-schema.org/draft-04/schema#"
    return fastjsonschema.compile(schema, use_default=False, use_formats=False, detailed_exceptions=False)


def is_valid(action: str, payload: Any, *, response: bool = False) -> bool | None:
    """Whether ``payload`` passes the 1.6 schema of ``action``; None when there is no compiled
    validator for it (unknown action, or one the library validates with Decimal)."""
    validator = _compiled(schema_name(action, response=response))
    if validator is None:
        return None
    try:
        validator(payload)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def warm_up(actions: Any) -> None:
    """Compile the request and response validators of ``actions`` now, not on the first message."""
    for action in actions:
        _compiled(schema_name(action))
        _compiled(schema_name(action, response=True))
