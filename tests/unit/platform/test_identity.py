"""Access tokens: only a current token of our issuer, for our audience, signed by a published key, says who asks."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud.platform.identity import (
    DRIVER,
    OPERATOR,
    KeyRing,
    Principal,
    TokenVerifier,
    Unauthorized,
    access_claims,
    principal_from_claims,
)

ALICE = Principal(subject="acc-alice", roles=frozenset({DRIVER}), email_verified=True)


def token(ring: KeyRing, principal: Principal = ALICE, *, issuer: str = "evpark", audience: str = "evpark",
          lifetime: timedelta = timedelta(minutes=15), now: datetime | None = None) -> str:
    return ring.sign(access_claims(principal, issuer=issuer, audience=audience, lifetime=lifetime, now=now))


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing.create(tmp_path / "keys", "k1")


def verifier(ring: KeyRing) -> TokenVerifier:
    return TokenVerifier(issuer="evpark", audience="evpark", jwks=ring.jwks())


async def test_a_current_token_says_who_asks(ring: KeyRing) -> None:
    assert await verifier(ring).verify(token(ring)) == ALICE


@pytest.mark.parametrize("case", ["expired", "wrong issuer", "wrong audience", "forged", "alg none", "wrong key",
                                  "garbage"])
async def test_a_token_that_is_not_ours_and_current_is_refused(ring: KeyRing, tmp_path: Path, case: str) -> None:
    good = token(ring)
    bad = {
        "expired": lambda: token(ring, now=datetime.now(UTC) - timedelta(hours=1)),
        "wrong issuer": lambda: token(ring, issuer="someone-else"),
        "wrong audience": lambda: token(ring, audience="another-api"),
        "forged": lambda: _with_claims(good, roles=["admin"]),
        "alg none": lambda: jwt.encode(jwt.decode(good, options={"verify_signature": False}), None, algorithm="none",
                                       headers={"kid": "k1"}),
        "wrong key": lambda: jwt.encode(jwt.decode(good, options={"verify_signature": False}),
                                        Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "k1"}),
        "garbage": lambda: "not-a-token",
    }[case]()
    with pytest.raises(Unauthorized):
        await verifier(ring).verify(bad)


async def test_after_a_rotation_old_tokens_stay_valid_and_new_ones_use_the_new_key(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    old_ring = KeyRing.create(folder, "k1")
    old_token = token(old_ring)
    new_ring = KeyRing.create(folder, "k2")  # the new key signs; the old one is still published
    new_token = token(new_ring)
    assert jwt.get_unverified_header(new_token)["kid"] == "k2"
    assert {k["kid"] for k in new_ring.jwks()["keys"]} == {"k1", "k2"}
    check = verifier(new_ring)
    assert await check.verify(old_token) == ALICE
    assert await check.verify(new_token) == ALICE
    retired = KeyRing({"k2": new_ring.keys["k2"]}, "k2")  # k1 dropped once its tokens have expired
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier(retired).verify(old_token)


def test_an_oidc_issuer_can_hold_roles_and_scopes_in_nested_claims() -> None:
    claims = {"sub": "kc-1", "realm_access": {"roles": ["operator", "offline_access"]}, "evpark_sites": "s1 s2"}
    principal = principal_from_claims(claims, roles_claim="realm_access.roles", sites_claim="evpark_sites")
    assert principal == Principal(subject="kc-1", roles=frozenset({OPERATOR}), sites=frozenset({"s1", "s2"}))
    assert principal.operates("s1") and not principal.operates("s3")


def _with_claims(token_: str, **changes: object) -> str:
    header, payload, signature = token_.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"
