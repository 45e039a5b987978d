"""Payment providers behind one port: the built-in prepaid wallet is kept in the payment
service's own tables (:mod:`cloud.payments.repository`); cards go through a :class:`CardProvider`.

The port is shaped as a real provider's API (Stripe and the like): ``tokenise`` a card once
(the PAN never reaches our tables), ``authorise`` an amount, ``capture`` it, ``refund`` part of a
capture; each call carries our idempotency reference, so a retried call charges once. A real
provider is one adapter implementing these four calls (its signed webhooks would arrive as a
route of this service calling the same use cases).

:class:`SandboxCardProvider` decides by the test card (``domain.SANDBOX_CARDS``): 4242 4242 4242
4242 approves, 4000 0000 0000 0002 is declined, 4000 0000 0000 9995 has insufficient funds,
4000 0000 0000 0119 times out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from cloud.payments.domain import SANDBOX_CARDS


@dataclass(frozen=True)
class CardToken:
    token: str
    brand: str
    last4: str


@dataclass(frozen=True)
class ProviderResult:
    ok: bool
    reference: str
    reason: str | None = None
    """declined, insufficient_funds or provider_timeout when not ok."""


class CardProvider(Protocol):
    async def tokenise(self, card_number: str) -> CardToken: ...

    async def authorise(self, token: str, amount: Decimal, currency: str, reference: str) -> ProviderResult: ...

    async def capture(self, authorisation: str, amount: Decimal, currency: str) -> ProviderResult: ...

    async def refund(self, capture: str, amount: Decimal, currency: str, reference: str) -> ProviderResult: ...


class SandboxCardProvider:
    """A provider in the process: the test cards' outcomes, no network, no money."""

    def __init__(self) -> None:
        self.authorised: dict[str, tuple[str, Decimal]] = {}
        """reference → (token, amount): what was authorised (a retry with one reference authorises once)."""

    async def tokenise(self, card_number: str) -> CardToken:
        digest = hashlib.sha256(card_number.encode()).hexdigest()[:24]
        return CardToken(token=f"sandbox_{SANDBOX_CARDS[card_number]}_{digest}", brand="visa", last4=card_number[-4:])

    async def authorise(self, token: str, amount: Decimal, currency: str, reference: str) -> ProviderResult:
        behaviour = token.removeprefix("sandbox_").rsplit("_", 1)[0]
        if behaviour != "approve":
            return ProviderResult(ok=False, reference=f"auth_{reference}", reason=behaviour)
        self.authorised.setdefault(reference, (token, amount))
        return ProviderResult(ok=True, reference=f"auth_{reference}")

    async def capture(self, authorisation: str, amount: Decimal, currency: str) -> ProviderResult:
        return ProviderResult(ok=True, reference=authorisation.replace("auth_", "cap_", 1))

    async def refund(self, capture: str, amount: Decimal, currency: str, reference: str) -> ProviderResult:
        return ProviderResult(ok=True, reference=f"re_{reference}")
