"""Account rules, free of I/O.

- An email is stored trimmed and in lower case; it names one account at most.
- A password has at least :data:`MIN_PASSWORD_LENGTH` characters (at most
  :data:`MAX_PASSWORD_LENGTH`, so hashing stays bounded) and is not the account's email.
- Roles are driver, operator, technician and admin (the words of :mod:`cloud.platform.identity`).
  An operator or technician acts on named sites and needs at least one; an account with only
  driver or admin roles has none.
- A refresh token is opaque and single use: using it rotates it (it is marked used and a new one
  of the same family is issued). Presenting a used token again means it leaked: the whole family
  is revoked. A token stops working when it expires, when its family is revoked (logout, password
  reset, disabled account) and at once when its account is disabled.
- A link token (email verification, password reset) is single use and expires
  (:data:`EMAIL_VERIFICATION_LIFETIME`, :data:`PASSWORD_RESET_LIFETIME`).
- Secrets (refresh tokens, link tokens, API keys) are random, so they are stored as a SHA-256
  hash (:func:`secret_hash`): a stolen table gives no usable secret, and no slow hash is needed.
- An admin may not disable their own account nor drop their own admin role: the last admin could
  lock everybody out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from cloud.contracts.errors import Conflict, DomainError

DRIVER = "driver"
OPERATOR = "operator"
TECHNICIAN = "technician"
ADMIN = "admin"
ROLES = (DRIVER, OPERATOR, TECHNICIAN, ADMIN)
SITE_SCOPED = frozenset({OPERATOR, TECHNICIAN})

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
MAX_EMAIL_LENGTH = 320
MAX_SITE_ID_LENGTH = 64
MAX_SITES = 200

EMAIL_VERIFICATION_LIFETIME = timedelta(hours=48)
PASSWORD_RESET_LIFETIME = timedelta(minutes=30)

API_KEY_PREFIX = "evk_"

# Deliberately loose: one @, no spaces, a dot in the domain. Whether the address receives mail
# is what the verification link proves.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


class InvalidAccount(DomainError):
    title = "Invalid account"


class WeakPassword(DomainError):
    title = "Password refused"


class EmailTaken(Conflict):
    def __init__(self, email: str) -> None:
        super().__init__(f"an account with email {email!r} exists already", code="email_taken")


class InvalidCredentials(DomainError):
    """A wrong password and an unknown email get this same answer."""

    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str = "the email or the password is wrong", *, code: str = "invalid_credentials"
                 ) -> None:
        super().__init__(detail, code=code)


class LoginThrottled(DomainError):
    status = 429
    title = "Too many failed logins"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"too many failed logins for this account; retry in {retry_after_seconds} s",
                         code="login_throttled")
        self.retry_after_seconds = retry_after_seconds


class InvalidLinkToken(DomainError):
    """A verification or reset token that is unknown, used or expired."""

    status = 400
    title = "Invalid or expired link"


class RefreshRefused(DomainError):
    status = 401
    title = "Unauthorized"


class LinkPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


@dataclass
class Account:
    account_id: str
    email: str
    name: str
    password_hash: str
    roles: frozenset[str]
    sites: frozenset[str]
    created_at: datetime
    updated_at: datetime
    email_verified: bool = False
    disabled: bool = False
    language: str = "en"
    time_zone: str = "UTC"

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles


@dataclass(frozen=True)
class NewAccount:
    """Command: open an account (a registering driver, or one an admin creates)."""

    email: str
    name: str
    password: str | None = None
    """None: generate one (an admin's or the CLI's account)."""
    roles: frozenset[str] = frozenset({DRIVER})
    sites: frozenset[str] = frozenset()
    email_verified: bool = False


@dataclass(frozen=True)
class ChangeAccount:
    """Command: an admin changes an account; ``None`` leaves a field as it is."""

    roles: frozenset[str] | None = None
    sites: frozenset[str] | None = None
    disabled: bool | None = None
    name: str | None = None


@dataclass
class RefreshFamily:
    """Every refresh token descended from one login; revoked as a whole."""

    family_id: str
    account_id: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass
class RefreshToken:
    token_hash: str
    family_id: str
    account_id: str
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None = None


class RefreshVerdict(StrEnum):
    VALID = "valid"
    UNKNOWN = "unknown"
    REUSED = "reused"
    EXPIRED = "expired"
    REVOKED = "revoked"
    ACCOUNT_DISABLED = "account_disabled"


@dataclass
class LinkToken:
    """A single-use token sent by email as a link (verification, password reset)."""

    token_hash: str
    account_id: str
    purpose: LinkPurpose
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None = None

    def usable(self, purpose: LinkPurpose, now: datetime) -> bool:
        return self.purpose == purpose and self.used_at is None and now < self.expires_at


@dataclass
class ApiKey:
    api_key_id: str
    account_id: str
    name: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None


@dataclass(frozen=True)
class AccountPage:
    accounts: list[Account]
    total: int


def secret_hash(secret: str) -> str:
    """How a random secret (refresh token, link token, API key) is stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def normalise_email(email: str) -> str:
    cleaned = email.strip().lower()
    if len(cleaned) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(cleaned):
        raise InvalidAccount(f"{email!r} is not an email address", code="invalid_email")
    return cleaned


def normalise_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > 200:
        raise InvalidAccount("name must be 1-200 characters", code="invalid_name")
    return cleaned


def check_password(password: str, *, email: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_PASSWORD_LENGTH} characters", code="password_too_short")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_PASSWORD_LENGTH} characters", code="password_too_long")
    if password.strip().lower() == email.strip().lower():
        raise WeakPassword("the password must not be the email address", code="password_is_email")
    return password


def check_roles(roles: Iterable[str], sites: Iterable[str]) -> tuple[frozenset[str], frozenset[str]]:
    """Valid roles with the site scopes they need: operators and technicians name sites, others none."""
    role_set = frozenset(roles)
    site_set = frozenset(s.strip() for s in sites)
    unknown = sorted(role_set - set(ROLES))
    if unknown:
        raise InvalidAccount(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}",
                             code="invalid_roles")
    if not role_set:
        raise InvalidAccount("an account needs at least one role", code="invalid_roles")
    if any(not s or len(s) > MAX_SITE_ID_LENGTH for s in site_set):
        raise InvalidAccount(f"site ids are 1-{MAX_SITE_ID_LENGTH} characters", code="invalid_sites")
    if len(site_set) > MAX_SITES:
        raise InvalidAccount(f"an account acts on at most {MAX_SITES} sites", code="invalid_sites")
    if role_set & SITE_SCOPED and not site_set:
        raise InvalidAccount("an operator or technician needs at least one site", code="sites_required")
    if not role_set & SITE_SCOPED and site_set:
        raise InvalidAccount("only operators and technicians act on sites; send sites: []", code="sites_not_allowed")
    return role_set, site_set


def open_account(command: NewAccount, *, account_id: str, password_hash: str, now: datetime) -> Account:
    """The new account, from a command whose password was already checked and hashed."""
    roles, sites = check_roles(command.roles, command.sites)
    return Account(account_id=account_id, email=normalise_email(command.email), name=normalise_name(command.name),
                   password_hash=password_hash, roles=roles, sites=sites, created_at=now, updated_at=now,
                   email_verified=command.email_verified)


def change(account: Account, command: ChangeAccount, *, actor_id: str, now: datetime) -> Account:
    """The account as ``command`` leaves it (the same object when nothing changes)."""
    roles, sites = check_roles(account.roles if command.roles is None else command.roles,
                               account.sites if command.sites is None else command.sites)
    changed = replace(account, roles=roles, sites=sites,
                      name=account.name if command.name is None else normalise_name(command.name),
                      disabled=account.disabled if command.disabled is None else command.disabled)
    if account.account_id == actor_id and (changed.disabled or not changed.is_admin):
        raise Conflict("an admin cannot disable their own account or drop their own admin role",
                       code="self_lockout")
    if changed == account:
        return account
    changed.updated_at = now
    return changed


def judge_refresh(token: RefreshToken | None, family: RefreshFamily | None, account: Account | None,
                  now: datetime) -> RefreshVerdict:
    """Whether a presented refresh token may be rotated; REUSED means: revoke its family."""
    if token is None or family is None or account is None:
        return RefreshVerdict.UNKNOWN
    if family.revoked_at is not None:
        return RefreshVerdict.REVOKED
    if token.used_at is not None:
        return RefreshVerdict.REUSED
    if account.disabled:
        return RefreshVerdict.ACCOUNT_DISABLED
    if now >= token.expires_at:
        return RefreshVerdict.EXPIRED
    return RefreshVerdict.VALID


def retry_after(window_started: datetime | None, window: timedelta, now: datetime) -> int:
    """Whole seconds until a throttling window ends (the whole window when its start is unknown)."""
    if window_started is None:
        return int(window.total_seconds())
    left = (window_started + window - now).total_seconds()
    return max(1, int(left) + (0 if left == int(left) else 1))
