"""What the accounts service's use cases return and its API answers with."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from cloud.accounts.domain import Account, AccountPage, ApiKey


class AccountOut(BaseModel):
    account_id: str
    email: str
    name: str
    roles: list[str] = Field(description="driver, operator, technician, admin")
    sites: list[str] = Field(description="site ids an operator or technician acts on")
    email_verified: bool
    disabled: bool
    language: str
    time_zone: str
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(account_id=account.account_id, email=account.email, name=account.name,
                   roles=sorted(account.roles), sites=sorted(account.sites), email_verified=account.email_verified,
                   disabled=account.disabled, language=account.language, time_zone=account.time_zone,
                   created_at=account.created_at)


class CreatedAccountOut(AccountOut):
    password: str | None = Field(default=None, description="the generated password, shown this once (null when "
                                 "the admin chose one)")


class AccountsOut(BaseModel):
    items: list[AccountOut]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: AccountPage, *, limit: int, offset: int) -> AccountsOut:
        return cls(items=[AccountOut.of(a) for a in page.accounts], total=page.total, limit=limit, offset=offset)


class TokensOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the access token is valid")


class AccessTokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="seconds the access token is valid")


class ApiKeyOut(BaseModel):
    api_key_id: str
    api_key: str = Field(description="the key itself, shown this once; only its hash is stored")
    name: str
    created_at: datetime

    @classmethod
    def of(cls, key: ApiKey, secret: str) -> ApiKeyOut:
        return cls(api_key_id=key.api_key_id, api_key=secret, name=key.name, created_at=key.created_at)


class EmailVerifiedOut(BaseModel):
    account_id: str
    email: str
    email_verified: bool


class AcceptedOut(BaseModel):
    detail: str


class JwksOut(BaseModel):
    keys: list[dict[str, Any]]
