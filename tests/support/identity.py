"""Callers for tests: the seven kinds of principal, and tokens a started service app trusts.

The tokens are signed with a key of the test session's own (never a service's), so a test proves
what a service answers to a verified caller without running the accounts service.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from cloud.contracts.identity import ADMIN, DRIVER, OPERATOR, TECHNICIAN, Principal
from cloud.platform.identity import KeyRing, TokenVerifier, access_claims

ISSUER = AUDIENCE = "evpark"

PRINCIPALS: dict[str, Principal] = {
    "driver_a": Principal(subject="acc-driver-a", roles=frozenset({DRIVER}), email_verified=True),
    "driver_b": Principal(subject="acc-driver-b", roles=frozenset({DRIVER}), email_verified=True),
    "operator_1": Principal(subject="acc-operator-1", roles=frozenset({OPERATOR}), sites=frozenset({"site-1"})),
    "operator_2": Principal(subject="acc-operator-2", roles=frozenset({OPERATOR}), sites=frozenset({"site-2"})),
    "technician_1": Principal(subject="acc-technician-1", roles=frozenset({TECHNICIAN}), sites=frozenset({"site-1"})),
    "admin": Principal(subject="acc-admin", roles=frozenset({ADMIN})),
}
"""Operators and the technician are scoped to ``site-1`` / ``site-2``."""


@cache
def ring() -> KeyRing:
    return KeyRing.create(Path(tempfile.mkdtemp(prefix="evpark-test-keys-")), "test-key")


def token(principal: Principal, *, lifetime: timedelta = timedelta(minutes=15)) -> str:
    return ring().sign(access_claims(principal, issuer=ISSUER, audience=AUDIENCE, lifetime=lifetime))


def headers(principal: Principal | str, *, lifetime: timedelta = timedelta(minutes=15)) -> dict[str, str]:
    who = PRINCIPALS[principal] if isinstance(principal, str) else principal
    return {"Authorization": f"Bearer {token(who, lifetime=lifetime)}"}


RUN_LONG = timedelta(hours=12)
"""The lifetime of a token made when a test module is imported: it must outlive the whole run (a module's tests
may start 20 minutes after collection, behind the end-to-end tests, and a 15-minute token was refused)."""


def verifier() -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, audience=AUDIENCE, jwks=ring().jwks())


def trust_test_tokens(app: Any) -> None:
    """Make a started app (its lifespan entered) verify the tokens of :func:`headers`."""
    app.state.verifier = verifier()
    platform = getattr(app.state, "platform", None)
    if platform is not None:
        platform.verifier = app.state.verifier
