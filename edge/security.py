"""Charger credentials for OCPP 1.6 Security Profiles 1 and 2 (security whitepaper edition 2).

The charger's AuthorizationKey is stored as a salted scrypt hash, never in clear; the HTTP
Basic password it sends on the upgrade request is checked against it in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

KEY_MIN, KEY_MAX = 16, 40
"""Security whitepaper 1.6 §2.1: the AuthorizationKey is 16 to 40 characters."""

_N, _R, _P = 2**14, 8, 1


def hash_key(key: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(key.encode(), salt=salt, n=_N, r=_R, p=_P)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_key(key: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(key.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """User and password of an ``Authorization: Basic`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def valid_key(key: str) -> bool:
    return KEY_MIN <= len(key) <= KEY_MAX and key.isprintable()
