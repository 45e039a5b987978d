from __future__ import annotations

import base64

import pytest

from edge.security import basic_credentials, hash_key, valid_key, verify_key


def test_a_key_is_stored_salted_and_verified_in_constant_time() -> None:
    stored = hash_key("0123456789abcdef")
    assert "0123456789abcdef" not in stored and stored != hash_key("0123456789abcdef")
    assert verify_key("0123456789abcdef", stored)
    assert not verify_key("0123456789abcdeX", stored)
    assert not verify_key("0123456789abcdef", "garbage")


@pytest.mark.parametrize(("header", "expected"), [
    ("Basic " + base64.b64encode(b"CP-1:secret:with:colons").decode(), ("CP-1", "secret:with:colons")),
    ("basic " + base64.b64encode(b"CP-1:").decode(), ("CP-1", "")),
    ("Bearer abc", None), ("Basic", None), ("Basic !!!", None), (None, None),
    ("Basic " + base64.b64encode(b"no-colon").decode(), None),
])
def test_basic_credentials_are_read_from_the_upgrade_request(header: str | None,
                                                             expected: tuple[str, str] | None) -> None:
    assert basic_credentials(header) == expected


@pytest.mark.parametrize(("key", "ok"), [("x" * 15, False), ("x" * 16, True), ("x" * 40, True), ("x" * 41, False),
                                         ("x" * 15 + "\n", False)])
def test_authorization_keys_have_16_to_40_printable_characters(key: str, ok: bool) -> None:
    assert valid_key(key) is ok
