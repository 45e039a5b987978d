"""The accounts service end to end over HTTP, on SQLite and PostgreSQL, with real argon2 and signed tokens."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import inspect

from cloud.accounts import SPEC, models
from cloud.accounts.adapters import MailFolder, NoMail, SigningKeysMissing
from cloud.accounts.app import mail_for
from cloud.accounts.bootstrap import DEMO_DRIVER, DEMO_OPERATOR, ensure_admin, ensure_demo_users
from cloud.platform.db import Database
from cloud.platform.events import InProcessBus
from cloud.platform.identity import Principal, TokenVerifier, Unauthorized
from cloud.platform.ports import Event
from cloud.platform.settings import CloudSettings
from tests.support.waiting import poll_until

ADMIN = "admin@evpark.local"
PASSWORD = "correct horse battery"


@dataclass
class Accounts:
    http: httpx.AsyncClient
    settings: CloudSettings
    admin_password: str
    events: list[Event] = field(default_factory=list)

    @property
    def mail(self) -> Path:
        return self.settings.data_dir / "mail"

    def links(self) -> list[str]:
        """The links of every mail written so far, oldest first."""
        files = sorted(self.mail.glob("*.txt")) if self.mail.exists() else []
        return [line for f in files for line in f.read_text().splitlines() if line.startswith("http")]

    def token_of_last_link(self, path: str) -> str:
        link = [link for link in self.links() if f"{path}?token=" in link][-1]
        return link.split("token=", 1)[1]

    async def login(self, email: str, password: str) -> dict[str, Any]:
        response = await self.http.post("/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    async def bearer(self, email: str, password: str) -> dict[str, str]:
        return {"authorization": f"Bearer {(await self.login(email, password))['access_token']}"}


def build(settings: CloudSettings, bus: InProcessBus) -> FastAPI:
    return SPEC.build_app(settings, bus=bus)


@pytest.fixture
async def accounts(database_url: str, tmp_path: Path) -> AsyncIterator[Accounts]:
    settings = CloudSettings(data_dir=tmp_path, database_url=database_url, public_url="https://evpark.example")
    admin_password = await ensure_admin(settings, ADMIN)
    assert admin_password is not None
    bus = InProcessBus()
    await bus.start()
    recorded: list[Event] = []

    async def record(event: Event) -> None:
        recorded.append(event)

    await bus.subscribe("test.accounts", ["account.*"], record)
    app = build(settings, bus)
    try:
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accounts") as http:
            yield Accounts(http, settings, admin_password, recorded)
    finally:
        await bus.close()


async def test_register_verify_the_email_log_in_and_read_me(accounts: Accounts) -> None:
    registered = await accounts.http.post("/auth/register", json={"email": "Ada@Example.com", "password": PASSWORD,
                                                                   "name": "Ada"})
    assert registered.status_code == 201, registered.text
    body = registered.json()
    assert (body["email"], body["roles"], body["sites"], body["email_verified"]) == ("ada@example.com", ["driver"],
                                                                                     [], False)
    assert body["created_at"].endswith(("Z", "+00:00"))
    assert "password" not in body and "password_hash" not in body
    assert await poll_until(lambda: "account.email_verification_requested" in [e.name for e in accounts.events])
    link = next(e for e in accounts.events if e.name == "account.email_verification_requested").payload["url"]
    assert link.startswith("https://evpark.example/auth/verify-email?token=")
    assert accounts.links() == [link], "on embedded defaults the link is also a file in <data_dir>/mail"
    mail_file = next(accounts.mail.glob("*.txt"))
    assert stat.S_IMODE(mail_file.stat().st_mode) == 0o600, "it holds a token"
    mail = mail_file.read_text()
    assert mail.startswith("To: ada@example.com\nSubject: Verify your evpark email address\n")

    verified = await accounts.http.get("/auth/verify-email", params={"token": link.split("token=", 1)[1]})
    assert verified.status_code == 200, verified.text
    assert verified.json()["email_verified"] is True
    again = await accounts.http.post("/auth/verify-email", json={"token": link.split("token=", 1)[1]})
    assert again.status_code == 400 and again.headers["content-type"] == "application/problem+json"

    tokens = await accounts.login("ada@example.com", PASSWORD)
    assert (tokens["token_type"], tokens["expires_in"]) == ("bearer", 900)
    me = await accounts.http.get("/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}"})
    assert me.status_code == 200, me.text
    assert {k: me.json()[k] for k in ("account_id", "email", "name", "roles", "sites", "email_verified", "language",
                                      "time_zone")} == {
        "account_id": body["account_id"], "email": "ada@example.com", "name": "Ada", "roles": ["driver"], "sites": [],
        "email_verified": True, "language": "en", "time_zone": "UTC"}
    assert (await accounts.http.get("/auth/me")).status_code == 401
    forged = await accounts.http.get("/auth/me", headers={"authorization": f"Bearer {tokens['access_token']}x"})
    assert forged.status_code == 401


async def test_a_token_minted_by_login_verifies_with_a_verifier_built_from_the_jwks(accounts: Accounts) -> None:
    tokens = await accounts.login(ADMIN, accounts.admin_password)
    jwks = (await accounts.http.get("/.well-known/jwks.json")).json()
    assert jwks["keys"] and all(set(key) >= {"kid", "kty", "crv", "x"} and "d" not in key for key in jwks["keys"]), \
        "public keys only"
    verifier = TokenVerifier(issuer="evpark", audience="evpark", jwks=jwks)
    principal = await verifier.verify(tokens["access_token"])
    assert principal.roles == frozenset({"admin"}) and principal.email_verified
    other_audience = TokenVerifier(issuer="evpark", audience="someone-else", jwks=jwks)
    with pytest.raises(Unauthorized, match="Audience"):
        await other_audience.verify(tokens["access_token"])


async def test_twenty_identical_registrations_at_once_give_one_account_and_nineteen_conflicts(
        accounts: Accounts) -> None:
    body = {"email": "race@example.com", "password": PASSWORD, "name": "Racer"}
    answers = await asyncio.gather(*(accounts.http.post("/auth/register", json=body) for _ in range(20)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [201] + [409] * 19, [r.text for r in answers if r.status_code not in (201, 409)]
    assert all(r.json()["code"] == "email_taken" for r in answers if r.status_code == 409)
    listed = (await accounts.http.get("/accounts", headers=await accounts.bearer(ADMIN, accounts.admin_password),
                                      params={"role": "driver"})).json()
    assert [a["email"] for a in listed["items"]] == ["race@example.com"]


async def test_a_wrong_password_and_an_unknown_email_answer_alike_in_about_the_same_time(accounts: Accounts) -> None:
    await accounts.http.post("/auth/register", json={"email": "ada@example.com", "password": PASSWORD, "name": "A"})

    async def attempt(email: str) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = await accounts.http.post("/auth/login", json={"email": email, "password": "wrong wrong"})
        return time.perf_counter() - started, response

    wrong = [await attempt("ada@example.com") for _ in range(2)]
    unknown = [await attempt("nobody@example.com") for _ in range(2)]
    for _, response in wrong + unknown:
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
    assert wrong[0][1].json() == unknown[0][1].json()
    # Both cost one argon2 verification (about half a second); without the dummy hash the
    # unknown email would answer in a few milliseconds.
    assert min(t for t, _ in unknown) > 0.5 * min(t for t, _ in wrong)


async def test_login_is_throttled_after_five_failures_with_retry_after(accounts: Accounts) -> None:
    await accounts.http.post("/auth/register", json={"email": "ada@example.com", "password": PASSWORD, "name": "A"})
    for _ in range(5):
        failed = await accounts.http.post("/auth/login", json={"email": "ada@example.com", "password": "guess guess"})
        assert failed.status_code == 401
    throttled = await accounts.http.post("/auth/login", json={"email": "ADA@example.com", "password": PASSWORD})
    assert throttled.status_code == 429, throttled.text
    assert 0 < int(throttled.headers["retry-after"]) <= 15 * 60
    assert throttled.json()["code"] == "login_throttled"
    assert (await accounts.http.post("/auth/login", json={"email": ADMIN, "password": accounts.admin_password})
            ).status_code == 200, "other accounts are not throttled"


async def test_refresh_rotates_reuse_revokes_the_family_and_logout_ends_a_login(accounts: Accounts) -> None:
    first = await accounts.login(ADMIN, accounts.admin_password)
    rotated = await accounts.http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    reused = await accounts.http.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert (reused.status_code, reused.json()["code"]) == (401, "refresh_token_reused")
    after = await accounts.http.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert (after.status_code, after.json()["code"]) == (401, "refresh_token_revoked")

    other = await accounts.login(ADMIN, accounts.admin_password)
    logout = await accounts.http.post("/auth/logout", json={"refresh_token": other["refresh_token"]})
    assert logout.status_code == 204
    assert (await accounts.http.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
            ).status_code == 401


async def test_password_reset_answers_alike_and_its_link_works_once(accounts: Accounts) -> None:
    await accounts.http.post("/auth/register", json={"email": "ada@example.com", "password": PASSWORD, "name": "A"})
    old_login = await accounts.login("ada@example.com", PASSWORD)
    known = await accounts.http.post("/auth/password-reset", json={"email": "ada@example.com"})
    unknown = await accounts.http.post("/auth/password-reset", json={"email": "nobody@example.com"})
    assert (known.status_code, unknown.status_code) == (202, 202)
    assert known.json() == unknown.json()
    token = accounts.token_of_last_link("/auth/password-reset/confirm")
    assert sum("/auth/password-reset/confirm?token=" in link for link in accounts.links()) == 1
    confirmed = await accounts.http.post("/auth/password-reset/confirm",
                                         json={"token": token, "password": "a brand new passphrase"})
    assert confirmed.status_code == 204, confirmed.text
    again = await accounts.http.post("/auth/password-reset/confirm",
                                     json={"token": token, "password": "yet another passphrase"})
    assert (again.status_code, again.json()["code"]) == (400, "invalid_reset_token")
    assert (await accounts.http.post("/auth/refresh", json={"refresh_token": old_login["refresh_token"]})
            ).status_code == 401, "a reset ends every login"
    assert (await accounts.login("ada@example.com", "a brand new passphrase"))["access_token"]
    assert await poll_until(lambda: "account.password_reset_requested" in [e.name for e in accounts.events])


async def test_admins_manage_accounts_and_api_keys_and_others_may_not(accounts: Accounts) -> None:
    admin = await accounts.bearer(ADMIN, accounts.admin_password)
    new = {"email": "olga@garage.example", "name": "Olga", "roles": ["operator"], "sites": ["site-1"]}
    assert (await accounts.http.post("/accounts", json=new)).status_code == 401
    no_site = await accounts.http.post("/accounts", json={**new, "sites": []}, headers=admin)
    assert (no_site.status_code, no_site.json()["code"]) == (422, "sites_required")
    created = await accounts.http.post("/accounts", json=new, headers=admin)
    assert created.status_code == 201, created.text
    olga = created.json()
    assert olga["password"] and (olga["roles"], olga["sites"]) == (["operator"], ["site-1"])
    operator = await accounts.bearer("olga@garage.example", olga["password"])
    for method, path, body in (("POST", "/accounts", new), ("GET", "/accounts", None),
                               ("PATCH", f"/accounts/{olga['account_id']}", {"disabled": True}),
                               ("POST", f"/accounts/{olga['account_id']}/api-keys", {"name": "x"})):
        answer = await accounts.http.request(method, path, json=body, headers=operator)
        assert answer.status_code == 403, (method, path, answer.text)

    operators = (await accounts.http.get("/accounts", params={"role": "operator", "limit": 10},
                                         headers=admin)).json()
    assert (operators["total"], [a["email"] for a in operators["items"]]) == (1, ["olga@garage.example"])

    key = await accounts.http.post(f"/accounts/{olga['account_id']}/api-keys", json={"name": "export"}, headers=admin)
    assert key.status_code == 201, key.text
    assert set(key.json()) == {"api_key_id", "api_key", "name", "created_at"} and key.json()["api_key"][:4] == "evk_"
    minted = await accounts.http.post("/auth/token", json={"api_key": key.json()["api_key"]})
    assert minted.status_code == 200, minted.text
    verifier = TokenVerifier(issuer="evpark", audience="evpark",
                             jwks=(await accounts.http.get("/.well-known/jwks.json")).json())
    assert await verifier.verify(minted.json()["access_token"]) == Principal(
        subject=olga["account_id"], roles=frozenset({"operator"}), sites=frozenset({"site-1"}), name="Olga")

    refresh = (await accounts.login("olga@garage.example", olga["password"]))["refresh_token"]
    disabled = await accounts.http.patch(f"/accounts/{olga['account_id']}", json={"disabled": True}, headers=admin)
    assert (disabled.status_code, disabled.json()["disabled"]) == (200, True)
    assert (await accounts.http.post("/auth/refresh", json={"refresh_token": refresh})).status_code == 401
    assert (await accounts.http.post("/auth/login", json={"email": "olga@garage.example",
                                                          "password": olga["password"]})).status_code == 401
    assert (await accounts.http.post("/auth/token", json={"api_key": key.json()["api_key"]})).status_code == 401
    assert await poll_until(lambda: any(e.name == "account.updated" and e.payload["disabled"]
                                        for e in accounts.events))

    revoked = await accounts.http.delete(f"/accounts/{olga['account_id']}/api-keys/{key.json()['api_key_id']}",
                                         headers=admin)
    assert revoked.status_code == 204
    assert (await accounts.http.patch("/accounts/nope", json={"name": "x"}, headers=admin)).status_code == 404


async def test_the_bootstrap_creates_the_admin_once_and_demo_logins_that_always_work(accounts: Accounts) -> None:
    assert await ensure_admin(accounts.settings, ADMIN) is None, "it existed already"
    first = await ensure_demo_users(accounts.settings, "site-1")
    second = await ensure_demo_users(accounts.settings, "site-1")
    assert set(first) == set(second) == {DEMO_OPERATOR, DEMO_DRIVER}
    for email, password in second.items():
        assert (await accounts.login(email, password))["access_token"]
    admin = await accounts.bearer(ADMIN, accounts.admin_password)
    everyone = (await accounts.http.get("/accounts", headers=admin)).json()
    assert sorted(a["email"] for a in everyone["items"]) == sorted([ADMIN, DEMO_DRIVER, DEMO_OPERATOR])
    by_email = {a["email"]: a for a in everyone["items"]}
    assert (by_email[DEMO_OPERATOR]["roles"], by_email[DEMO_OPERATOR]["sites"]) == (["operator"], ["site-1"])
    assert by_email[DEMO_DRIVER]["email_verified"] is True


async def test_the_tables_of_the_models_are_the_tables_the_migration_creates(database_url: str) -> None:
    db = Database(database_url)
    await db.connect()
    try:
        assert SPEC.migrations is not None
        await db.migrate(SPEC.migrations)
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(lambda sync: {
                table: {c["name"] for c in inspect(sync).get_columns(table)}
                for table in inspect(sync).get_table_names()})
    finally:
        await db.close()
    tables = [models.Account, models.AccountRole, models.AccountSite, models.RefreshFamily, models.RefreshToken,
              models.LinkToken, models.ApiKey]
    for model in tables:
        table = model.__table__  # type: ignore[attr-defined]
        assert columns.get(table.name) == {c.name for c in table.columns}, table.name


async def test_signing_keys_are_created_once_in_development_and_tokens_survive_a_restart(tmp_path: Path) -> None:
    settings = CloudSettings(data_dir=tmp_path)
    password = await ensure_admin(settings, ADMIN, password=PASSWORD)
    assert password == PASSWORD
    tokens: list[str] = []
    for _ in range(2):
        bus = InProcessBus()
        await bus.start()
        app = build(settings, bus)
        async with app.router.lifespan_context(app), \
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://accounts") as http:
            for token in tokens:  # minted before the restart
                assert (await http.get("/auth/me", headers={"authorization": f"Bearer {token}"})).status_code == 200
            login = await http.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})
            tokens.append(login.json()["access_token"])
        await bus.close()
    assert len(list((tmp_path / "jwt-keys").glob("*.pem"))) == 1


def test_production_refuses_to_start_without_signing_keys(tmp_path: Path) -> None:
    settings = CloudSettings(env="production", data_dir=tmp_path, database_url="postgresql+asyncpg://db/{service}",
                             amqp_url="amqp://broker/", jwt_keys_dir=tmp_path / "keys")
    with pytest.raises(SigningKeysMissing, match="EVPARK_JWT_KEYS_DIR"):
        SPEC.build_app(settings)
    (tmp_path / "keys").mkdir()
    with pytest.raises(SigningKeysMissing, match="EVPARK_JWT_KEYS_DIR"):
        SPEC.build_app(settings)
    assert list((tmp_path / "keys").iterdir()) == [], "production never makes up a key"


def test_links_are_written_as_files_only_on_embedded_defaults(tmp_path: Path) -> None:
    development = mail_for(CloudSettings(data_dir=tmp_path))
    assert isinstance(development, MailFolder) and development.folder == tmp_path / "mail"
    production = mail_for(CloudSettings(env="production", data_dir=tmp_path, database_url="postgresql+asyncpg://x/y",
                                        amqp_url="amqp://broker/"))
    assert isinstance(production, NoMail)


async def test_after_a_key_rotation_old_tokens_stay_valid_and_new_ones_are_signed_with_the_new_key(
        tmp_path: Path) -> None:
    from cloud.platform.identity import KeyRing

    keys = tmp_path / "keys"
    KeyRing.create(keys, "k1")
    settings = CloudSettings(data_dir=tmp_path, database_url="", jwt_keys_dir=keys)
    await ensure_admin(settings, ADMIN, password=PASSWORD)

    async def running() -> Any:
        bus = InProcessBus()
        await bus.start()
        app = build(settings, bus)
        return app, app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                        base_url="http://accounts")

    import jwt as pyjwt

    _app, lifespan, http = await running()
    async with lifespan, http:
        old = (await http.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})).json()["access_token"]
    assert pyjwt.get_unverified_header(old)["kid"] == "k1"

    KeyRing.create(keys, "k2")  # the operator adds the next key beside the old one and restarts
    _app, lifespan, http = await running()
    async with lifespan, http:
        new = (await http.post("/auth/login", json={"email": ADMIN, "password": PASSWORD})).json()["access_token"]
        assert pyjwt.get_unverified_header(new)["kid"] == "k2"
        jwks = (await http.get("/.well-known/jwks.json")).json()
        assert {key["kid"] for key in jwks["keys"]} == {"k1", "k2"}
        for token in (old, new):
            me = await http.get("/auth/me", headers={"authorization": f"Bearer {token}"})
            assert (me.status_code, me.json()["email"]) == (200, ADMIN)
    elsewhere = TokenVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience, jwks=jwks)
    assert (await elsewhere.verify(old)).subject == (await elsewhere.verify(new)).subject
