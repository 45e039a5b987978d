"""Accounts: people and machine clients, their roles and site scopes, and the tokens they act with."""

from pathlib import Path

from cloud.contracts.accounts import (
    AccountRegistered,
    AccountUpdated,
    EmailVerificationRequested,
    PasswordResetRequested,
)
from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="accounts",
    port=8104,
    app="cloud.accounts.app:build_app",
    description="Accounts, roles and site scopes, API keys; issues the signed access tokens (JWKS).",
    prefixes=("/auth", "/accounts", "/.well-known"),
    public_paths=("/auth/register", "/auth/login", "/auth/refresh", "/auth/logout", "/auth/verify-email",
                  "/auth/password-reset", "/auth/password-reset/confirm", "/auth/token", "/.well-known/jwks.json"),
    migrations=Path(__file__).parent / "migrations",
    secret_mounts=(("evpark-jwt-keys", "/etc/evpark/jwt-keys", "EVPARK_JWT_KEYS_DIR"),),
    publishes=(AccountRegistered, AccountUpdated, PasswordResetRequested, EmailVerificationRequested),
)
