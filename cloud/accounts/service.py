"""Accounts use cases: registration, login and tokens, password reset, and what an admin manages.

The ports a use case needs besides its unit of work are below: :class:`Passwords` (slow
hashing, off the event loop), :class:`AccessTokens` (signed JWTs and their public keys),
:class:`LinkMail` (a copy of each emailed link where e-mail is files) and the platform cache
(the login throttle, shared by every replica when it is Redis). Their adapters are in
:mod:`cloud.accounts.adapters`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from cloud.accounts import domain, events
from cloud.accounts.domain import (
    Account,
    ApiKey,
    ChangeAccount,
    InvalidCredentials,
    InvalidLinkToken,
    LinkPurpose,
    LinkToken,
    NewAccount,
    RefreshFamily,
    RefreshRefused,
    RefreshToken,
    RefreshVerdict,
)
from cloud.accounts.repository import AccountRepository
from cloud.accounts.views import (
    AcceptedOut,
    AccessTokenOut,
    AccountOut,
    AccountsOut,
    ApiKeyOut,
    CreatedAccountOut,
    EmailVerifiedOut,
    TokensOut,
)
from cloud.contracts.errors import NotFound
from cloud.platform.identity import Forbidden, Principal
from cloud.platform.ports import Cache
from cloud.platform.settings import CloudSettings
from cloud.platform.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

RESET_ACCEPTED = ("If an account with this email exists, a link to choose a new password is on its way; "
                  "it works once, within 30 minutes.")


class Passwords(Protocol):
    """Port: a slow, salted password hash (argon2), run off the event loop."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        """Whether ``password`` matches; and a new hash when ``hashed`` uses outdated parameters."""


class AccessTokens(Protocol):
    """Port: signs access tokens and publishes the keys that verify them."""

    @property
    def lifetime_seconds(self) -> int: ...

    def issue(self, principal: Principal) -> str: ...

    def jwks(self) -> dict[str, Any]: ...


class LinkMail(Protocol):
    """Port: where a link to a person goes besides its event (files on embedded defaults; in production
    the notification service delivers it from the event alone)."""

    async def send(self, to: str, subject: str, url: str, expires_at: datetime) -> None: ...


@dataclass(frozen=True)
class AccountPolicy:
    """The configurable numbers of the accounts rules (defaults: GLOSSARY.md)."""

    refresh_lifetime: timedelta = timedelta(days=30)
    login_failures: int = 5
    login_window: timedelta = timedelta(minutes=15)
    public_url: str = "http://127.0.0.1:8000"

    @classmethod
    def from_settings(cls, settings: CloudSettings) -> AccountPolicy:
        return cls(refresh_lifetime=timedelta(days=settings.refresh_token_days),
                   login_failures=settings.login_failures,
                   login_window=timedelta(minutes=settings.login_window_minutes),
                   public_url=settings.public_url.rstrip("/"))


@dataclass(frozen=True)
class Provisioned:
    """An account opened by an admin or the operator's CLI, with the password generated for it."""

    account: AccountOut
    password: str | None


class AccountService:
    def __init__(self, units: UnitOfWorkFactory[AccountRepository], *, passwords: Passwords, tokens: AccessTokens,
                 cache: Cache, mail: LinkMail | None = None, policy: AccountPolicy | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._uow = units
        self._passwords = passwords
        self._tokens = tokens
        self._cache = cache
        self._mail = mail
        self._policy = policy or AccountPolicy()
        self._clock = clock
        self._dummy_hash: str | None = None

    # --- registration and email verification -------------------------------------------------

    async def register(self, email: str, password: str, name: str) -> AccountOut:
        """A person opens a driver account; a verification link goes to their email."""
        provisioned = await self._open(NewAccount(email=email, name=name, password=password))
        return provisioned.account

    async def verify_email(self, token: str) -> EmailVerifiedOut:
        """The link of a verification email was followed: the address is verified (once per link)."""
        now = self._clock()
        async with self._uow() as uow:
            link = await uow.repo.get_link_token(domain.secret_hash(token))
            if link is None or not link.usable(LinkPurpose.VERIFY_EMAIL, now) \
                    or not await uow.repo.use_link_token(link.token_hash, now):
                raise InvalidLinkToken("this verification link is unknown, used or expired; ask for a new one",
                                       code="invalid_verification_token")
            account = await self._account(uow.repo, link.account_id)
            if not account.email_verified:
                account = replace(account, email_verified=True, updated_at=now)
                await uow.repo.save(account)
                uow.emit(events.account_updated(account))
        log.info("email verified", account_id=account.account_id)
        return EmailVerifiedOut(account_id=account.account_id, email=account.email, email_verified=True)

    # --- login and tokens --------------------------------------------------------------------

    async def login(self, email: str, password: str) -> TokensOut:
        """Email and password in, an access token and a refresh token out; throttled per account."""
        attempted = email.strip().lower()
        await self._count_attempt(attempted)
        async with self._uow() as uow:
            account = await uow.repo.find_by_email(attempted)
        if account is None:
            # As slow as a wrong password, so the answer's timing does not tell which emails exist.
            await self._passwords.verify(password, await self._dummy())
            raise InvalidCredentials()
        valid, rehashed = await self._passwords.verify(password, account.password_hash)
        if not valid:
            log.info("login failed", account_id=account.account_id)
            raise InvalidCredentials()
        if account.disabled:
            raise InvalidCredentials("this account is disabled", code="account_disabled")
        await self._forget_attempts(attempted)
        now = self._clock()
        async with self._uow() as uow:
            if rehashed is not None:
                account = replace(account, password_hash=rehashed)
                await uow.repo.save(account)
            family = RefreshFamily(family_id=str(uuid.uuid4()), account_id=account.account_id, created_at=now)
            await uow.repo.add_family(family)
            refresh_token = await self._new_refresh_token(uow.repo, family, now)
        log.info("logged in", account_id=account.account_id)
        return TokensOut(access_token=self._tokens.issue(_principal(account)), refresh_token=refresh_token,
                         expires_in=self._tokens.lifetime_seconds)

    async def refresh(self, refresh_token: str) -> TokensOut:
        """Rotate a refresh token: the old one is spent, a new one of the same family comes back.
        A spent token presented again revokes its whole family."""
        now = self._clock()
        token_hash = domain.secret_hash(refresh_token)
        new_token = ""
        async with self._uow() as uow:
            token = await uow.repo.get_refresh_token(token_hash)
            family = None if token is None else await uow.repo.get_family(token.family_id)
            account = None if token is None else await uow.repo.get(token.account_id)
            verdict = domain.judge_refresh(token, family, account, now)
            if verdict is RefreshVerdict.VALID and not await uow.repo.use_refresh_token(token_hash, now):
                verdict = RefreshVerdict.REUSED  # another request rotated it a moment ago
            if verdict is RefreshVerdict.REUSED and family is not None:
                # Committed before answering: the revocation must hold even though this request fails.
                await uow.repo.revoke_family(family.family_id, now)
            if verdict is RefreshVerdict.VALID and family is not None:
                new_token = await self._new_refresh_token(uow.repo, family, now)
        if verdict is not RefreshVerdict.VALID or account is None:
            log.info("refresh refused", verdict=verdict.value,
                     account_id=None if token is None else token.account_id)
            raise RefreshRefused(_REFUSALS[verdict], code=f"refresh_token_{verdict.value}")
        return TokensOut(access_token=self._tokens.issue(_principal(account)), refresh_token=new_token,
                         expires_in=self._tokens.lifetime_seconds)

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's family: that login's tokens stop working (unknown tokens: nothing to do)."""
        now = self._clock()
        async with self._uow() as uow:
            token = await uow.repo.get_refresh_token(domain.secret_hash(refresh_token))
            if token is not None:
                await uow.repo.revoke_family(token.family_id, now)

    async def token_for_api_key(self, api_key: str) -> AccessTokenOut:
        """An access token for a machine client, acting with its key's account's roles and sites."""
        refused = InvalidCredentials("unknown or revoked API key", code="invalid_api_key")
        if not api_key.startswith(domain.API_KEY_PREFIX):
            raise refused
        async with self._uow() as uow:
            key = await uow.repo.find_api_key(domain.secret_hash(api_key))
            account = None if key is None else await uow.repo.get(key.account_id)
        if key is None or key.revoked_at is not None or account is None or account.disabled:
            raise refused
        return AccessTokenOut(access_token=self._tokens.issue(_principal(account)),
                              expires_in=self._tokens.lifetime_seconds)

    def jwks(self) -> dict[str, Any]:
        """The public keys that verify the access tokens issued here."""
        return self._tokens.jwks()

    async def me(self, caller: Principal) -> AccountOut:
        """The caller's own account."""
        async with self._uow() as uow:
            return AccountOut.of(await self._account(uow.repo, caller.subject))

    # --- password reset ----------------------------------------------------------------------

    async def request_password_reset(self, email: str) -> AcceptedOut:
        """A reset link goes to the account's email, if there is such an account; the answer is the same."""
        address = domain.normalise_email(email)
        now = self._clock()
        sent: tuple[Account, str, datetime] | None = None
        async with self._uow() as uow:
            account = await uow.repo.find_by_email(address)
            if account is not None and not account.disabled:
                raw, link = _link_token(account, LinkPurpose.RESET_PASSWORD, now, domain.PASSWORD_RESET_LIFETIME)
                await uow.repo.add_link_token(link)
                url = f"{self._policy.public_url}/auth/password-reset/confirm?token={raw}"
                uow.emit(events.password_reset_requested(account, url, link.expires_at))
                sent = (account, url, link.expires_at)
        if sent is not None:
            await self._send(sent[0], "Choose a new evpark password", sent[1], sent[2])
        return AcceptedOut(detail=RESET_ACCEPTED)

    async def reset_password(self, token: str, password: str) -> None:
        """Set a new password with a reset link's token (once); every login of the account ends."""
        token_hash = domain.secret_hash(token)
        invalid = InvalidLinkToken("this password reset link is unknown, used or expired; ask for a new one",
                                   code="invalid_reset_token")
        async with self._uow() as uow:
            link = await uow.repo.get_link_token(token_hash)
            account = None if link is None else await uow.repo.get(link.account_id)
        if link is None or account is None or not link.usable(LinkPurpose.RESET_PASSWORD, self._clock()):
            raise invalid
        domain.check_password(password, email=account.email)
        hashed = await self._passwords.hash(password)
        now = self._clock()
        async with self._uow() as uow:
            if now >= link.expires_at or not await uow.repo.use_link_token(token_hash, now):
                raise invalid
            account = replace(await self._account(uow.repo, account.account_id), password_hash=hashed,
                              updated_at=now)
            await uow.repo.save(account)
            await uow.repo.revoke_families_of(account.account_id, now)
            await uow.repo.use_link_tokens_of(account.account_id, LinkPurpose.RESET_PASSWORD, now)
        await self._forget_attempts(account.email)
        log.info("password reset", account_id=account.account_id)

    # --- what an admin manages ---------------------------------------------------------------

    async def create_account(self, actor: Principal, command: NewAccount) -> CreatedAccountOut:
        """An admin opens an account with roles and site scopes; a password is generated when none is given."""
        _require_admin(actor)
        provisioned = await self._open(command)
        return CreatedAccountOut(**provisioned.account.model_dump(), password=provisioned.password)

    async def list_accounts(self, actor: Principal, *, limit: int, offset: int,
                            role: str | None = None) -> AccountsOut:
        """Accounts, oldest first; only those with ``role`` when given."""
        _require_admin(actor)
        async with self._uow() as uow:
            page = await uow.repo.page(limit=limit, offset=offset, role=role)
        return AccountsOut.of(page, limit=limit, offset=offset)

    async def change_account(self, actor: Principal, account_id: str, command: ChangeAccount) -> AccountOut:
        """An admin changes roles, scopes, name or disables the account (its refresh tokens stop at once)."""
        _require_admin(actor)
        now = self._clock()
        async with self._uow() as uow:
            account = await self._account(uow.repo, account_id)
            changed = domain.change(account, command, actor_id=actor.subject, now=now)
            if changed is not account:
                await uow.repo.save(changed)
                uow.emit(events.account_updated(changed))
                if changed.disabled and not account.disabled:
                    await uow.repo.revoke_families_of(account_id, now)
        log.info("account changed", account_id=account_id, by=actor.subject, disabled=changed.disabled)
        return AccountOut.of(changed)

    async def create_api_key(self, actor: Principal, account_id: str, name: str) -> ApiKeyOut:
        """A key for a machine client of the account; the key is shown once, only its hash is kept."""
        _require_admin(actor)
        secret = domain.API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(api_key_id=str(uuid.uuid4()), account_id=account_id, name=domain.normalise_name(name),
                     key_hash=domain.secret_hash(secret), created_at=self._clock())
        async with self._uow() as uow:
            await self._account(uow.repo, account_id)
            await uow.repo.add_api_key(key)
        log.info("API key created", account_id=account_id, api_key_id=key.api_key_id, by=actor.subject)
        return ApiKeyOut.of(key, secret)

    async def revoke_api_key(self, actor: Principal, account_id: str, api_key_id: str) -> None:
        """The key stops giving tokens (those it gave expire with the access-token lifetime)."""
        _require_admin(actor)
        async with self._uow() as uow:
            key = await uow.repo.get_api_key(api_key_id)
            if key is None or key.account_id != account_id:
                raise NotFound(f"account {account_id!r} has no API key {api_key_id!r}", code="unknown_api_key")
            if key.revoked_at is None:
                await uow.repo.save_api_key(replace(key, revoked_at=self._clock()))

    # --- the operator's CLI (never over HTTP) ------------------------------------------------

    async def provision(self, command: NewAccount) -> Provisioned:
        """Open an account without an admin caller (``evpark up``, ``evpark accounts create-admin``)."""
        return await self._open(command)

    async def find(self, email: str) -> AccountOut | None:
        async with self._uow() as uow:
            account = await uow.repo.find_by_email(domain.normalise_email(email))
        return None if account is None else AccountOut.of(account)

    async def grant_site(self, account_id: str, site_id: str) -> AccountOut:
        """Add a site to an operator's or technician's scopes."""
        now = self._clock()
        async with self._uow() as uow:
            account = await self._account(uow.repo, account_id)
            changed = domain.change(account, ChangeAccount(sites=account.sites | {site_id}), actor_id="", now=now)
            if changed is not account:
                await uow.repo.save(changed)
                uow.emit(events.account_updated(changed))
        return AccountOut.of(changed)

    async def set_password(self, email: str, password: str) -> None:
        """Replace the password of an account (its logins end), without a reset link."""
        address = domain.normalise_email(email)
        domain.check_password(password, email=address)
        hashed = await self._passwords.hash(password)
        now = self._clock()
        async with self._uow() as uow:
            account = await uow.repo.find_by_email(address)
            if account is None:
                raise NotFound(f"no account {address!r}", code="unknown_account")
            await uow.repo.save(replace(account, password_hash=hashed, updated_at=now))
            await uow.repo.revoke_families_of(account.account_id, now)

    # --- helpers -----------------------------------------------------------------------------

    async def _open(self, command: NewAccount) -> Provisioned:
        email = domain.normalise_email(command.email)
        generated = None if command.password else new_password()
        password = domain.check_password(command.password or generated or "", email=email)
        domain.normalise_name(command.name)
        domain.check_roles(command.roles, command.sites)
        async with self._uow() as uow:  # refused before the slow hash; the unique index settles races
            if await uow.repo.find_by_email(email) is not None:
                raise domain.EmailTaken(email)
        hashed = await self._passwords.hash(password)
        now = self._clock()
        account = domain.open_account(command, account_id=str(uuid.uuid4()), password_hash=hashed, now=now)
        link: tuple[str, datetime] | None = None
        async with self._uow() as uow:
            await uow.repo.add(account)
            uow.emit(events.account_registered(account))
            if not account.email_verified:
                raw, token = _link_token(account, LinkPurpose.VERIFY_EMAIL, now, domain.EMAIL_VERIFICATION_LIFETIME)
                await uow.repo.add_link_token(token)
                link = (f"{self._policy.public_url}/auth/verify-email?token={raw}", token.expires_at)
                uow.emit(events.email_verification_requested(account, link[0], link[1]))
        if link is not None:
            await self._send(account, "Verify your evpark email address", *link)
        log.info("account opened", account_id=account.account_id, roles=sorted(account.roles))
        return Provisioned(AccountOut.of(account), generated)

    async def _new_refresh_token(self, repo: AccountRepository, family: RefreshFamily, now: datetime) -> str:
        raw = secrets.token_urlsafe(32)
        await repo.add_refresh_token(RefreshToken(token_hash=domain.secret_hash(raw), family_id=family.family_id,
                                                  account_id=family.account_id, issued_at=now,
                                                  expires_at=now + self._policy.refresh_lifetime))
        return raw

    @staticmethod
    async def _account(repo: AccountRepository, account_id: str) -> Account:
        account = await repo.get(account_id)
        if account is None:
            raise NotFound(f"no account {account_id!r}", code="unknown_account")
        return account

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await self._passwords.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _throttle_keys(self, email: str) -> tuple[str, str]:
        # Counted per email, known or not: a 429 only for existing accounts would tell which exist.
        # Hashed, so the shared cache holds no addresses.
        digest = domain.secret_hash(email)[:32]
        return f"accounts:login-failures:{digest}", f"accounts:login-window:{digest}"

    async def _count_attempt(self, email: str) -> None:
        # Counted before the password is checked, so that concurrent guesses cannot slip past the
        # limit; a successful login forgets the count.
        counter, started = self._throttle_keys(email)
        window = self._policy.login_window.total_seconds()
        count = await self._cache.incr(counter, window)
        now = self._clock()
        if count == 1:
            await self._cache.set(started, str(now.timestamp()).encode(), window)
        if count > self._policy.login_failures:
            raw = await self._cache.get(started)
            since = None if raw is None else datetime.fromtimestamp(float(raw), UTC)
            seconds = domain.retry_after(since, self._policy.login_window, now)
            log.warning("login throttled", retry_after=seconds)
            raise domain.LoginThrottled(seconds)

    async def _forget_attempts(self, email: str) -> None:
        for key in self._throttle_keys(email):
            await self._cache.delete(key)

    async def _send(self, account: Account, subject: str, url: str, expires_at: datetime) -> None:
        if self._mail is None:
            return
        try:
            await self._mail.send(account.email, subject, url, expires_at)
        except OSError as exc:  # the event carries the link; the file copy is a convenience
            log.warning("link not written to the mail folder", error=repr(exc), account_id=account.account_id)


_REFUSALS = {
    RefreshVerdict.UNKNOWN: "unknown refresh token; log in again",
    RefreshVerdict.REUSED: "this refresh token was used already, so it may have leaked: every token of its login "
                           "is revoked; log in again",
    RefreshVerdict.EXPIRED: "the refresh token has expired; log in again",
    RefreshVerdict.REVOKED: "the refresh token was revoked (logout, password reset or a reused token); log in again",
    RefreshVerdict.ACCOUNT_DISABLED: "the account is disabled",
}


def new_password() -> str:
    """A generated password: 144 random bits, URL-safe."""
    return secrets.token_urlsafe(18)


def _principal(account: Account) -> Principal:
    return Principal(subject=account.account_id, roles=account.roles, sites=account.sites,
                     email_verified=account.email_verified, name=account.name)


def _require_admin(actor: Principal) -> None:
    if not actor.is_admin:
        raise Forbidden("only an admin manages accounts")


def _link_token(account: Account, purpose: LinkPurpose, now: datetime, lifetime: timedelta) -> tuple[str, LinkToken]:
    raw = secrets.token_urlsafe(32)
    return raw, LinkToken(token_hash=domain.secret_hash(raw), account_id=account.account_id, purpose=purpose,
                          created_at=now, expires_at=now + lifetime)
