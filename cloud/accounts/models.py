"""Tables of the accounts service (its own database)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from cloud.platform.types import UtcDateTime


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: str = Field(primary_key=True, max_length=36)
    email: str = Field(max_length=320, unique=True, description="trimmed, lower case")
    name: str = Field(max_length=200)
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    email_verified: bool = False
    disabled: bool = False
    language: str = Field(default="en", max_length=35)
    time_zone: str = Field(default="UTC", max_length=64)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    updated_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))


class AccountRole(SQLModel, table=True):
    __tablename__ = "account_roles"

    account_id: str = Field(foreign_key="accounts.id", primary_key=True, max_length=36)
    role: str = Field(primary_key=True, max_length=16, index=True)


class AccountSite(SQLModel, table=True):
    """A site an operator or technician acts on."""

    __tablename__ = "account_sites"

    account_id: str = Field(foreign_key="accounts.id", primary_key=True, max_length=36)
    site_id: str = Field(primary_key=True, max_length=64)


class RefreshFamily(SQLModel, table=True):
    """The refresh tokens descended from one login; revoked as a whole."""

    __tablename__ = "refresh_families"

    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", max_length=36, index=True)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class RefreshToken(SQLModel, table=True):
    """A refresh token, by the SHA-256 of its value (the value itself is never stored)."""

    __tablename__ = "refresh_tokens"

    token_hash: str = Field(primary_key=True, max_length=64)
    family_id: str = Field(foreign_key="refresh_families.id", max_length=36, index=True)
    account_id: str = Field(max_length=36)
    issued_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class LinkToken(SQLModel, table=True):
    """A single-use emailed link token (email verification, password reset), by its SHA-256."""

    __tablename__ = "link_tokens"

    token_hash: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(foreign_key="accounts.id", max_length=36, index=True)
    purpose: str = Field(max_length=32)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))


class ApiKey(SQLModel, table=True):
    """A machine client's key, by its SHA-256; it acts with its account's roles and sites."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(foreign_key="accounts.id", max_length=36, index=True)
    name: str = Field(max_length=100)
    key_hash: str = Field(max_length=64, unique=True)
    created_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
