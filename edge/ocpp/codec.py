"""The OCPP-J frame codec of the central system: JSON text in and out, with the 1.6 spellings.

* A frame is decoded once; the decoder itself tells whether its text may hold an integer too large
  for a SQLite INTEGER (JSON schema sets no bounds), so only such frames have their payload walked
  (:func:`fits_sqlite`).
* OCPP-J 1.6 §4.2.3: error codes keep the 1.6 spelling on the wire; the ``ocpp`` library writes
  the 2.0.1 "FormatViolation" (:func:`v16_spelling`).
* The message id of a CALL that is not valid JSON is still read (:func:`call_id`), so that the
  CALL can be answered.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ocpp.messages import MessageType

# OCPP-J 1.6 §4.2.3 spellings for the codes the ocpp library writes in 2.0.1 style.
V16_ERROR_CODES = {
    "FormatViolation": "FormationViolation",
    "OccurrenceConstraintViolation": "OccurenceConstraintViolation",
}

_INT64 = (-(2**63), 2**63 - 1)

# An integer outside SQLite's range has at least 19 digits in the frame's text; without such a
# run of digits the payload walk of fits_sqlite cannot fail and is skipped.
_LONG_DIGITS = re.compile(r"\d{19}")

# Recovers the message id of a CALL that is not valid JSON, so it can still be answered.
_CALL_ID = re.compile(r'^\s*\[\s*2\s*,\s*"([^"\\]{1,36})"')

_CALL_ERROR_PREFIX = f"[{MessageType.CallError:d},"
_CALL_RESULT = int(MessageType.CallResult)

_dumps = json.JSONEncoder(separators=(",", ":")).encode


class _LongInteger(Exception):
    """An integer of 19 characters or more in a frame (see :func:`decode_frame`)."""


def _integer(text: str) -> int:
    if len(text) >= 19:
        raise _LongInteger
    return int(text)


_decode_short = json.JSONDecoder(parse_int=_integer).decode


def decode_frame(raw_msg: str | bytes) -> tuple[Any, bool]:
    """The frame, and whether its text may hold an integer too large for SQLite.

    The decoder itself notices the integer tokens of 19 characters or more (cheaper than searching the
    text for a run of digits); a frame with one is decoded again, plainly, and its payload walked.
    Raises ValueError (or UnicodeDecodeError) for a frame that is not JSON.
    """
    if isinstance(raw_msg, str):
        try:
            return _decode_short(raw_msg), False
        except _LongInteger:
            return json.loads(raw_msg), True
    frame = json.loads(raw_msg)
    return frame, _LONG_DIGITS.search(raw_msg.decode("utf-8", "replace")) is not None


def fits_sqlite(value: Any) -> bool:
    """Whether every integer in a payload fits a SQLite INTEGER (JSON schema sets no bounds)."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    if isinstance(value, dict):
        return all(fits_sqlite(v) for v in value.values())
    if isinstance(value, list):
        return all(fits_sqlite(v) for v in value)
    return True


def frame_text(raw_msg: str | bytes) -> str:
    """A frame as text, for the log and :func:`call_id` (undecodable bytes replaced)."""
    return raw_msg.decode("utf-8", "replace") if isinstance(raw_msg, bytes) else raw_msg


def call_id(text: str) -> str | None:
    """The message id of a frame that starts like a CALL, even when the rest is not JSON."""
    match = _CALL_ID.match(text)
    return match.group(1) if match else None


def v16_spelling(message: str) -> str:
    """A frame about to be sent, with a CALLERROR's error code in its 1.6 spelling."""
    if message.startswith(_CALL_ERROR_PREFIX):
        frame = json.loads(message)
        if frame[2] in V16_ERROR_CODES:
            frame[2] = V16_ERROR_CODES[frame[2]]
            return json.dumps(frame, separators=(",", ":"))
    return message


def call_result_frame(unique_id: str, payload: dict[str, Any]) -> str:
    """The CALLRESULT frame ``[3, "<uniqueId>", {<payload>}]``, compact."""
    return f"[{_CALL_RESULT},{_dumps(unique_id)},{_dumps(payload)}]"
