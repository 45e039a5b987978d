"""Accounts REST API: thin routers that call one use case each."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from cloud.accounts.domain import ChangeAccount, LoginThrottled, NewAccount
from cloud.accounts.service import AccountService
from cloud.accounts.views import (
    AcceptedOut,
    AccessTokenOut,
    AccountOut,
    AccountsOut,
    ApiKeyOut,
    CreatedAccountOut,
    EmailVerifiedOut,
    JwksOut,
    TokensOut,
)
from cloud.platform.app import problem
from cloud.platform.identity import CurrentUser


def _service(request: Request) -> AccountService:
    return request.app.state.accounts  # type: ignore[no-any-return]


ServiceDep = Annotated[AccountService, Depends(_service)]
AccountId = Annotated[str, Path(min_length=1, max_length=64, description="the account's id")]
Role = Literal["driver", "operator", "technician", "admin"]

Email = Annotated[str, Field(min_length=3, max_length=320, examples=["ada@example.com"])]
NewPassword = Annotated[str, Field(min_length=1, max_length=256, description="at least 10 characters, not the email")]
Password = Annotated[str, Field(min_length=1, max_length=1024)]
Secret = Annotated[str, Field(min_length=1, max_length=512)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(_In):
    email: Email
    password: NewPassword
    name: Name


class LoginIn(_In):
    email: Email
    password: Password


class RefreshIn(_In):
    refresh_token: Secret


class TokenIn(_In):
    token: Secret


class PasswordResetIn(_In):
    email: Email


class PasswordResetConfirmIn(_In):
    token: Secret
    password: NewPassword


class ApiKeyTokenIn(_In):
    api_key: Secret


class CreateAccountIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"email": "olga@garage.example", "name": "Olga", "roles": ["operator"], "sites": ["site-1"]}]})

    email: Email
    name: Name
    password: NewPassword | None = Field(default=None, description="omit to have one generated (shown once)")
    roles: list[Role] = Field(min_length=1, max_length=4)
    sites: list[str] = Field(default_factory=list, max_length=200,
                             description="required for operator and technician; empty for driver and admin")


class ChangeAccountIn(_In):
    roles: list[Role] | None = Field(default=None, min_length=1, max_length=4)
    sites: list[str] | None = Field(default=None, max_length=200)
    disabled: bool | None = Field(default=None, description="true: logins are refused, refresh tokens stop at once")
    name: Name | None = None


class ApiKeyIn(_In):
    name: Annotated[str, Field(min_length=1, max_length=100, examples=["billing-export"])]


auth = APIRouter(prefix="/auth", tags=["auth"])


@auth.post("/register", response_model=AccountOut, status_code=201)
async def register(body: RegisterIn, service: ServiceDep) -> AccountOut:
    """Open a driver account; a verification link goes to the email."""
    return await service.register(body.email, body.password, body.name)


@auth.get("/verify-email", response_model=EmailVerifiedOut,
          responses={400: {"description": "unknown, used or expired link"}})
async def verify_email_link(token: Annotated[str, Query(min_length=1, max_length=512)],
                            service: ServiceDep) -> EmailVerifiedOut:
    """Follow the link of a verification email: the address is verified."""
    return await service.verify_email(token)


@auth.post("/verify-email", response_model=EmailVerifiedOut,
           responses={400: {"description": "unknown, used or expired link"}})
async def verify_email(body: TokenIn, service: ServiceDep) -> EmailVerifiedOut:
    """Verify the email with the token of a verification link."""
    return await service.verify_email(body.token)


@auth.post("/login", response_model=TokensOut, responses={401: {"description": "wrong email or password"},
                                                          429: {"description": "too many failed logins"}})
async def login(body: LoginIn, service: ServiceDep) -> TokensOut | Response:
    """Email and password in; an access token (short-lived) and a refresh token out."""
    try:
        return await service.login(body.email, body.password)
    except LoginThrottled as exc:
        response = problem(exc.status, exc.title, exc.detail, instance="/auth/login", code=exc.code)
        response.headers["retry-after"] = str(exc.retry_after_seconds)
        return response


@auth.post("/refresh", response_model=TokensOut, responses={401: {"description": "unknown, spent or expired"}})
async def refresh(body: RefreshIn, service: ServiceDep) -> TokensOut:
    """Trade a refresh token for a new access token and a new refresh token (the old one is spent)."""
    return await service.refresh(body.refresh_token)


@auth.post("/logout", status_code=204)
async def logout(body: RefreshIn, service: ServiceDep) -> None:
    """End the login of this refresh token: it and every token rotated from it stop working."""
    await service.logout(body.refresh_token)


@auth.get("/me", response_model=AccountOut)
async def me(user: CurrentUser, service: ServiceDep) -> AccountOut:
    """The caller's own account."""
    return await service.me(user)


@auth.post("/password-reset", response_model=AcceptedOut, status_code=202)
async def password_reset(body: PasswordResetIn, service: ServiceDep) -> AcceptedOut:
    """Ask for a password reset link; the answer is the same whether or not the account exists."""
    return await service.request_password_reset(body.email)


@auth.post("/password-reset/confirm", status_code=204,
           responses={400: {"description": "unknown, used or expired link"}})
async def password_reset_confirm(body: PasswordResetConfirmIn, service: ServiceDep) -> None:
    """Choose a new password with the token of a reset link; every login of the account ends."""
    await service.reset_password(body.token, body.password)


@auth.post("/token", response_model=AccessTokenOut, responses={401: {"description": "unknown or revoked key"}})
async def token_for_api_key(body: ApiKeyTokenIn, service: ServiceDep) -> AccessTokenOut:
    """An access token for a machine client's API key."""
    return await service.token_for_api_key(body.api_key)


accounts = APIRouter(prefix="/accounts", tags=["accounts"])


@accounts.post("", response_model=CreatedAccountOut, status_code=201)
async def create_account(body: CreateAccountIn, user: CurrentUser, service: ServiceDep) -> CreatedAccountOut:
    """Admin: open an account with roles and site scopes (a generated password is shown once)."""
    return await service.create_account(user, NewAccount(email=body.email, name=body.name, password=body.password,
                                                         roles=frozenset(body.roles), sites=frozenset(body.sites),
                                                         email_verified=False))


@accounts.get("", response_model=AccountsOut)
async def list_accounts(user: CurrentUser, service: ServiceDep,
                        limit: Annotated[int, Query(ge=1, le=200)] = 50,
                        offset: Annotated[int, Query(ge=0)] = 0,
                        role: Annotated[Role | None, Query(description="only accounts with this role")] = None,
                        ) -> AccountsOut:
    """Admin: the accounts, oldest first."""
    return await service.list_accounts(user, limit=limit, offset=offset, role=role)


@accounts.patch("/{account_id}", response_model=AccountOut)
async def change_account(account_id: AccountId, body: ChangeAccountIn, user: CurrentUser,
                         service: ServiceDep) -> AccountOut:
    """Admin: change roles, site scopes or name, or disable the account."""
    return await service.change_account(user, account_id, ChangeAccount(
        roles=None if body.roles is None else frozenset(body.roles),
        sites=None if body.sites is None else frozenset(body.sites), disabled=body.disabled, name=body.name))


@accounts.post("/{account_id}/api-keys", response_model=ApiKeyOut, status_code=201)
async def create_api_key(account_id: AccountId, body: ApiKeyIn, user: CurrentUser,
                         service: ServiceDep) -> ApiKeyOut:
    """Admin: a new API key acting as the account (shown once)."""
    return await service.create_api_key(user, account_id, body.name)


@accounts.delete("/{account_id}/api-keys/{api_key_id}", status_code=204)
async def revoke_api_key(account_id: AccountId, api_key_id: Annotated[str, Path(min_length=1, max_length=64)],
                         user: CurrentUser, service: ServiceDep) -> None:
    """Admin: revoke an API key; it gives no more access tokens."""
    await service.revoke_api_key(user, account_id, api_key_id)


well_known = APIRouter(prefix="/.well-known", tags=["auth"])


@well_known.get("/jwks.json", response_model=JwksOut)
async def jwks(service: ServiceDep) -> JwksOut:
    """The public keys that verify this issuer's access tokens (JWKS)."""
    return JwksOut.model_validate(service.jwks())


router = APIRouter()
router.include_router(auth)
router.include_router(accounts)
router.include_router(well_known)
