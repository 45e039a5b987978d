"""Charger configuration keys that hold a credential, and their masking.

The security whitepaper makes AuthorizationKey write-only: its value never goes to the calls
log, the uplink or a log line in clear (:func:`mask_secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SECRET_KEYS = frozenset({"authorizationkey"})
"""Configuration keys whose value is a credential (security whitepaper: AuthorizationKey is write-only)."""
KEY_ADOPTED = frozenset({"Accepted", "RebootRequired"})
"""ChangeConfiguration answers after which the charger uses the new AuthorizationKey (now or after a reboot)."""
MASK = "********"


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and key.lower() in SECRET_KEYS


def mask_secrets(action: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The payload as it may be stored, listed, logged and relayed: a credential's value masked (in the
    request of a ChangeConfiguration, and in a GetConfiguration answer of a charger that lists its key)."""
    if action == "ChangeConfiguration" and is_secret_key(payload.get("key")) and "value" in payload:
        return {**payload, "value": MASK}
    keys = payload.get("configurationKey")
    if action == "GetConfiguration" and isinstance(keys, list):
        return {**payload, "configurationKey": [
            {**item, "value": MASK} if isinstance(item, dict) and is_secret_key(item.get("key")) and "value" in item
            else item for item in keys]}
    return dict(payload)
