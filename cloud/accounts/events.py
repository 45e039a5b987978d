"""What the accounts service publishes (the models live in :mod:`cloud.contracts.accounts`).

Publishes on ``account.events``: ``account.registered`` and ``account.updated`` (the facts other
services keep about a person), ``account.email_verification_requested`` and
``account.password_reset_requested`` (a link the notification service delivers).
Consumes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from cloud.accounts.domain import Account
from cloud.contracts.accounts import (
    AccountFacts,
    AccountRegistered,
    AccountUpdated,
    EmailVerificationRequested,
    PasswordResetRequested,
)

F = TypeVar("F", bound=AccountFacts)


def _facts(model: type[F], account: Account) -> F:
    return model(account_id=account.account_id, email=account.email, name=account.name, language=account.language,
                 time_zone=account.time_zone, roles=sorted(account.roles), sites=sorted(account.sites),
                 email_verified=account.email_verified, disabled=account.disabled)


def account_registered(account: Account) -> AccountRegistered:
    return _facts(AccountRegistered, account)


def account_updated(account: Account) -> AccountUpdated:
    return _facts(AccountUpdated, account)


def email_verification_requested(account: Account, url: str, expires_at: datetime) -> EmailVerificationRequested:
    return EmailVerificationRequested(account_id=account.account_id, email=account.email, name=account.name,
                                      language=account.language, url=url, expires_at=expires_at)


def password_reset_requested(account: Account, url: str, expires_at: datetime) -> PasswordResetRequested:
    return PasswordResetRequested(account_id=account.account_id, email=account.email, name=account.name,
                                  language=account.language, url=url, expires_at=expires_at)
