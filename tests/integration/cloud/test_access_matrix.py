"""Every REST route of every service, asked by each kind of caller, through the gateway.

The callers are real accounts of the accounts service (tokens from ``/auth/login``): anonymous,
driver A, driver B, an operator of site 1, an operator of site 2, a technician of site 1, and the
admin. The expected answer of each (route, caller) is written out in :data:`EXPECTED` — not
derived from the policy code under test — and the table must name every route the services
serve: a route added without an entry fails :func:`test_the_table_names_every_route_of_every_service`.

The whole cloud runs in this process on SQLite and the in-process bus; the gateway reaches each
service through an ASGI transport, so every request is checked at the gateway and again by the
service. Bad tokens are refused both at the gateway and at a service reached directly.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from cloud.accounts.bootstrap import ensure_admin
from cloud.gateway.app import build_app as build_gateway
from cloud.parking.booking import slot_id_of
from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.identity import TokenVerifier
from cloud.platform.settings import CloudSettings
from cloud.registry import domain_services
from mqtt import (
    Envelope,
    IdTagStatus,
    InventoryBay,
    InventoryCharger,
    SessionStarted,
    SessionStopped,
    SiteInventory,
    Topics,
)
from tests.support.waiting import eventually

CALLERS = ("anonymous", "driver_a", "driver_b", "operator_1", "operator_2", "technician_1", "admin")

SITE_1_TARIFF: dict[str, Any] = {
    "site_id": "site-1", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
    "elements": [{"components": [{"type": "energy", "price": "0.35"}, {"type": "flat", "price": "0.50"}]}],
}
"""The tariff the admin sets for site 1 before the table is asked."""

MATRIX_SLOT = slot_id_of("site-1", "EV-1")
_MATRIX_START = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
MATRIX_WINDOW = (_MATRIX_START.isoformat(), (_MATRIX_START + timedelta(hours=1)).isoformat())
"""The bay and window driver A reserves in the table (parking)."""

# (method, route template) → (concrete path, body or a function of the caller giving it, answers in CALLERS order)
EXPECTED: dict[tuple[str, str], tuple[str, Any, tuple[int, ...]]] = {
    # accounts: public routes answer everybody alike
    ("POST", "/auth/register"): ("/auth/register", lambda who: {
        "email": f"new-{who}@matrix.test", "password": "a long passphrase", "name": who},
        (201, 201, 201, 201, 201, 201, 201)),
    ("GET", "/auth/verify-email"): ("/auth/verify-email?token=not-a-token", None, (400,) * 7),
    ("POST", "/auth/verify-email"): ("/auth/verify-email", {"token": "not-a-token"}, (400,) * 7),
    ("POST", "/auth/login"): ("/auth/login", lambda who: {"email": f"nobody-{who}@matrix.test",
                                                         "password": "wrong password"}, (401,) * 7),
    ("POST", "/auth/refresh"): ("/auth/refresh", {"refresh_token": "not-a-token"}, (401,) * 7),
    ("POST", "/auth/logout"): ("/auth/logout", {"refresh_token": "not-a-token"}, (204,) * 7),
    ("POST", "/auth/password-reset"): ("/auth/password-reset", {"email": "someone@matrix.test"}, (202,) * 7),
    ("POST", "/auth/password-reset/confirm"): ("/auth/password-reset/confirm",
                                               {"token": "not-a-token", "password": "a long passphrase"}, (400,) * 7),
    ("POST", "/auth/token"): ("/auth/token", {"api_key": "evk_not-a-key"}, (401,) * 7),
    ("GET", "/.well-known/jwks.json"): ("/.well-known/jwks.json", None, (200,) * 7),
    # accounts: the caller's own account; administration is the admin's
    ("GET", "/auth/me"): ("/auth/me", None, (401, 200, 200, 200, 200, 200, 200)),
    ("POST", "/accounts"): ("/accounts", lambda who: {
        "email": f"made-by-{who}@matrix.test", "name": "New operator", "password": "a long passphrase",
        "roles": ["operator"], "sites": ["site-1"]}, (401, 403, 403, 403, 403, 403, 201)),
    ("GET", "/accounts"): ("/accounts", None, (401, 403, 403, 403, 403, 403, 200)),
    ("PATCH", "/accounts/{account_id}"): ("/accounts/{driver_b_account}", {"name": "Driver B"},
                                          (401, 403, 403, 403, 403, 403, 200)),
    ("POST", "/accounts/{account_id}/api-keys"): ("/accounts/{driver_b_account}/api-keys", {"name": "script"},
                                                  (401, 403, 403, 403, 403, 403, 201)),
    ("DELETE", "/accounts/{account_id}/api-keys/{api_key_id}"): (
        "/accounts/{driver_b_account}/api-keys/no-such-key", None, (401, 403, 403, 403, 403, 403, 404)),
    # vehicles: a driver's own; operators and technicians neither register nor search
    ("POST", "/vehicles/register"): ("/vehicles/register", lambda who: {
        "plate": f"NEW {CALLERS.index(who)}", "id_tags": [f"NEWTAG{CALLERS.index(who)}"]},
        (401, 201, 201, 403, 403, 403, 201)),
    ("GET", "/vehicles"): ("/vehicles?plate=MX-A", None, (401, 200, 200, 403, 403, 403, 200)),
    ("GET", "/vehicles/{vehicle_id}"): ("/vehicles/{vehicle_a}", None, (401, 200, 404, 404, 404, 404, 200)),
    ("GET", "/vehicles/{vehicle_id}/status"): ("/vehicles/{vehicle_a}/status", None,
                                               (401, 200, 404, 404, 404, 404, 200)),
    # driver A's PUT over version 1 succeeds; the admin's, over the same version after it, is stale
    ("PUT", "/vehicles/{vehicle_id}"): ("/vehicles/{vehicle_a}", {"plate": "MX-A", "id_tags": ["MXTAGA"],
                                                                  "make": "Matrix", "version": 1},
                                        (401, 200, 404, 403, 403, 403, 409)),
    # driver B's spare vehicle: B deletes it, so for the admin after B it is gone
    ("DELETE", "/vehicles/{vehicle_id}"): ("/vehicles/{vehicle_spare}", None, (401, 404, 204, 403, 403, 403, 404)),
    # search: a driver their own, an operator and the admin everyone's; technicians no
    ("GET", "/vehicles/search"): ("/vehicles/search?type=electric", None, (401, 200, 200, 200, 200, 403, 200)),
    # the vehicle-type catalogue: read by every role, edited by the admin
    ("GET", "/vehicles/types"): ("/vehicles/types", None, (401, 200, 200, 200, 200, 200, 200)),
    ("GET", "/vehicles/types/{type_id}"): ("/vehicles/types/nissan-leaf-40", None, (401,) + (200,) * 6),
    ("POST", "/vehicles/types"): ("/vehicles/types", lambda who: {
        "type_id": f"matrix-{CALLERS.index(who)}", "make": "Matrix", "model": f"M{CALLERS.index(who)}"},
        (401, 403, 403, 403, 403, 403, 201)),
    ("PUT", "/vehicles/types/{type_id}"): ("/vehicles/types/nissan-leaf-40", {
        "make": "Nissan", "model": "Leaf 40 kWh", "battery_kwh": "40", "connector_types": ["type2", "chademo"],
        "version": 1}, (401, 403, 403, 403, 403, 403, 200)),
    # charging: driver A's vehicle charged at site 1
    ("GET", "/charging/status/{vehicle_id}"): ("/charging/status/{vehicle_a}", None,
                                               (401, 200, 404, 200, 404, 200, 200)),
    ("GET", "/charging/history/{vehicle_id}"): ("/charging/history/{vehicle_a}", None,
                                                (401, 200, 404, 200, 404, 200, 200)),
    # charging anomalies: the site's operators and the admin only (another operator's site is unknown)
    ("GET", "/charging/anomalies"): ("/charging/anomalies?site_id=site-1", None,
                                     (401, 403, 403, 200, 404, 403, 200)),
    # remote start/stop of driver A's vehicle: its charger CP-1 of site 1 is offline (no edge here), its
    # session ended; anyone but its owner and the admin is told the vehicle does not exist
    ("POST", "/charging/start"): ("/charging/start", {"vehicle_id": "{vehicle_a}", "site_id": "site-1",
                                                      "charger_id": "CP-1"}, (401, 409, 404, 404, 404, 404, 409)),
    ("POST", "/charging/stop"): ("/charging/stop", {"vehicle_id": "{vehicle_a}"}, (401, 409, 404, 404, 404, 404, 409)),
    # stations: drivers see every site's, staff their sites'; commands for the site's staff (CP-1 offline: 409)
    ("GET", "/charging/stations"): ("/charging/stations?site_id=site-1", None, (401, 200, 200, 200, 404, 200, 200)),
    ("POST", "/charging/stations/{site_id}/{charger_id}/unlock"): (
        "/charging/stations/site-1/CP-1/unlock", {"connector_id": 1}, (401, 404, 404, 409, 404, 409, 409)),
    ("POST", "/charging/stations/{site_id}/{charger_id}/reset"): (
        "/charging/stations/site-1/CP-1/reset", {"type": "Soft"}, (401, 404, 404, 409, 404, 409, 409)),
    ("POST", "/charging/stations/{site_id}/{charger_id}/availability"): (
        "/charging/stations/site-1/CP-1/availability", {"connector_id": 0, "type": "Inoperative"},
        (401, 404, 404, 409, 404, 409, 409)),
    # parking: site 1 is operator 1's and technician 1's
    ("GET", "/parking/sites/{site_id}"): ("/parking/sites/site-1", None, (401, 403, 403, 200, 404, 200, 200)),
    ("GET", "/parking/sites/{site_id}/bays"): ("/parking/sites/site-1/bays", None,
                                               (401, 403, 403, 200, 404, 200, 200)),
    ("GET", "/parking/sites/{site_id}/chargers"): ("/parking/sites/site-1/chargers", None,
                                                   (401, 403, 403, 200, 404, 200, 200)),
    ("GET", "/parking/sites/{site_id}/power-limit"): ("/parking/sites/site-1/power-limit", None,
                                                      (401, 403, 403, 200, 404, 200, 200)),
    # parking reservations: driver A reserves EV-1 of site 1 for their vehicle (the admin then finds it taken),
    # releases it by vehicle (none is left for the admin); status and slots for everybody signed in
    ("POST", "/parking/reserve"): ("/parking/reserve", {
        "vehicle_id": "{vehicle_a}", "site_id": "site-1", "bay_id": "EV-1", "starts_at": MATRIX_WINDOW[0],
        "ends_at": MATRIX_WINDOW[1]}, (401, 201, 404, 404, 404, 404, 409)),
    ("GET", "/parking/status"): ("/parking/status?site_id=site-1", None, (401, 200, 200, 200, 200, 200, 200)),
    ("GET", "/parking/slots/{slot_id}"): (f"/parking/slots/{MATRIX_SLOT}", None, (401, 200, 200, 200, 200, 200, 200)),
    ("DELETE", "/parking/release"): ("/parking/release?vehicle_id={vehicle_a}", None,
                                     (401, 200, 404, 404, 404, 404, 404)),
    ("GET", "/parking/history/{vehicle_id}"): ("/parking/history/{vehicle_a}", None,
                                               (401, 200, 404, 404, 404, 404, 200)),
    ("GET", "/parking/lots/{site_id}"): ("/parking/lots/site-1", None, (401, 403, 403, 200, 404, 200, 200)),
    ("PUT", "/parking/lots/{site_id}"): ("/parking/lots/site-1", {"name": "Matrix"},
                                         (401, 403, 403, 200, 404, 403, 200)),
    ("PUT", "/parking/slots/{slot_id}/service"): (f"/parking/slots/{MATRIX_SLOT}/service",
                                                  {"in_service": True, "reason": "matrix"},
                                                  (401, 403, 403, 200, 404, 403, 200)),
    ("GET", "/parking/sites/{site_id}/availability"): ("/parking/sites/site-1/availability", None,
                                                       (401, 200, 200, 200, 200, 200, 200)),
    ("PUT", "/parking/sites/{site_id}/power-limit"): ("/parking/sites/site-1/power-limit", {"limit_a": 32},
                                                      (401, 403, 403, 202, 404, 403, 202)),
    # payments: site 1 has a tariff (set by the admin); prices are for drivers to see
    ("GET", "/billing/rates/{site_id}"): ("/billing/rates/site-1", None, (401, 200, 200, 200, 404, 200, 200)),
    ("PUT", "/billing/rates/{site_id}"): ("/billing/rates/site-1", {**SITE_1_TARIFF, "tax_rate": "0.07"},
                                          (401, 403, 403, 200, 404, 403, 200)),
    ("GET", "/billing/estimate"): ("/billing/estimate?site_id=site-1&bay_type=ev&power_class=ac"
                                   "&arrive=2026-11-23T18:00:00Z&leave=2026-11-23T20:00:00Z&energy_kwh=10", None,
                                   (401, 200, 200, 200, 200, 200, 200)),
    # payments: an ad-hoc charge is site 1's operator's or the admin's (no Idempotency-Key here: 422 once allowed)
    ("POST", "/payments/charge"): ("/payments/charge", {"account_id": "{driver_a_account}", "site_id": "site-1",
                                                        "amount": "5.00", "currency": "EUR"},
                                   (401, 403, 403, 422, 404, 403, 422)),
    ("POST", "/payments/refund"): ("/payments/refund", {"payment_id": "no-such-payment", "amount": "1.00",
                                                        "reason": "matrix"}, (401, 404, 404, 404, 404, 404, 404)),
    ("GET", "/payments/history/{customer_id}"): ("/payments/history/{driver_a_account}", None,
                                                 (401, 200, 404, 404, 404, 404, 200)),
    ("GET", "/payments/wallet"): ("/payments/wallet", None, (401, 200, 200, 200, 200, 200, 200)),
    ("POST", "/payments/wallet/top-up"): ("/payments/wallet/top-up", {"amount": "5.00", "currency": "EUR",
                                                                      "method_id": "no-such-method"},
                                          (401, 422, 422, 422, 422, 422, 422)),
    ("GET", "/payments/methods"): ("/payments/methods", None, (401, 200, 200, 200, 200, 200, 200)),
    ("POST", "/payments/methods"): ("/payments/methods", {"kind": "wallet"}, (401, 201, 201, 201, 201, 201, 201)),
    ("DELETE", "/payments/methods/{method_id}"): ("/payments/methods/no-such-method", None,
                                                  (401, 404, 404, 404, 404, 404, 404)),
    ("GET", "/payments/debt/{account_id}"): ("/payments/debt/{driver_a_account}?site_id=site-1", None,
                                             (401, 200, 404, 200, 404, 200, 200)),
    ("GET", "/payments/sites/{site_id}/debts"): ("/payments/sites/site-1/debts", None,
                                                 (401, 403, 403, 200, 404, 200, 200)),
    ("GET", "/payments/sites/{site_id}/settings"): ("/payments/sites/site-1/settings", None,
                                                    (401, 403, 403, 200, 404, 200, 200)),
    ("PUT", "/payments/sites/{site_id}/settings"): ("/payments/sites/site-1/settings", {"refuse_when_in_debt": False},
                                                    (401, 403, 403, 200, 404, 403, 200)),
    ("POST", "/invoices/generate"): ("/invoices/generate", {"stay_id": "no-such-stay"},
                                     (401, 404, 404, 404, 404, 404, 404)),
    ("GET", "/invoices/{invoice_id}"): ("/invoices/no-such-invoice", None, (401, 404, 404, 404, 404, 404, 404)),
    # charging's read model of the tariff above (payment.tariff_changed): prices are for everyone to see
    ("GET", "/charging/rates"): ("/charging/rates?site_id=site-1", None, (401, 200, 200, 200, 200, 200, 200)),
    # analytics: operators of the site and admins; another operator's site is unknown to them
    ("GET", "/analytics/usage"): ("/analytics/usage?site_id=site-1", None, (401, 403, 403, 200, 404, 403, 200)),
    ("GET", "/analytics/revenue"): ("/analytics/revenue?site_id=site-1", None, (401, 403, 403, 200, 404, 403, 200)),
    ("GET", "/analytics/peak-hours"): ("/analytics/peak-hours?site_id=site-1", None,
                                       (401, 403, 403, 200, 404, 403, 200)),
    ("GET", "/analytics/vehicle-types"): ("/analytics/vehicle-types?site_id=site-1", None,
                                          (401, 403, 403, 200, 404, 403, 200)),
    ("GET", "/metrics/health"): ("/metrics/health", None, (401, 403, 403, 200, 200, 403, 200)),
    # notifications: everybody's own inbox and preferences; templates the admin's; dead letters operators' and
    # the admin's (an operator's only for their sites: an unknown id is a 404 for them)
    ("GET", "/notifications"): ("/notifications", None, (401, 200, 200, 200, 200, 200, 200)),
    ("POST", "/notifications/{notification_id}/read"): ("/notifications/no-such-notification/read", None,
                                                        (401, 404, 404, 404, 404, 404, 404)),
    ("GET", "/notifications/preferences"): ("/notifications/preferences", None, (401, 200, 200, 200, 200, 200, 200)),
    ("PUT", "/notifications/preferences"): ("/notifications/preferences", {
        "quiet_hours": {"start": "22:00", "end": "07:00"}, "channels": {"payment.completed": {"email": False}}},
        (401, 200, 200, 200, 200, 200, 200)),
    ("GET", "/notifications/templates"): ("/notifications/templates", None, (401, 403, 403, 403, 403, 403, 200)),
    ("PUT", "/notifications/templates/{kind}/{language}"): ("/notifications/templates/payment.completed/en", {
        "subject": "Paid", "text": "Hello {{ name }}, thank you."}, (401, 403, 403, 403, 403, 403, 200)),
    ("GET", "/notifications/failed"): ("/notifications/failed", None, (401, 403, 403, 200, 200, 403, 200)),
    ("POST", "/notifications/failed/{notification_id}/retry"): ("/notifications/failed/no-such-notification/retry",
                                                                None, (401, 403, 403, 404, 404, 403, 404)),
    # webhooks: every account its own (a local receiver: the matrix runs embedded); driver B's is another's for
    # driver A (404), B deletes it, so for everyone after B it is gone
    ("GET", "/notifications/webhooks"): ("/notifications/webhooks", None, (401, 200, 200, 200, 200, 200, 200)),
    ("POST", "/notifications/webhooks"): ("/notifications/webhooks", lambda who: {
        "url": f"http://127.0.0.1:9/matrix/{who}"}, (401, 201, 201, 201, 201, 201, 201)),
    ("DELETE", "/notifications/webhooks/{webhook_id}"): ("/notifications/webhooks/{webhook_b}", None,
                                                         (401, 404, 204, 404, 404, 404, 404)),
}
PLATFORM_ROUTES = {"/health", "/ready"}


def served_routes(settings: CloudSettings) -> set[tuple[str, str]]:
    """(method, template) of every route in the OpenAPI of every registered service."""
    found = set()
    for spec in domain_services():
        for path, operations in spec.build_app(settings).openapi()["paths"].items():
            if path not in PLATFORM_ROUTES:
                found |= {(method.upper(), path) for method in operations}
    return found


def test_the_table_names_every_route_of_every_service(tmp_path: Path) -> None:
    served = served_routes(CloudSettings(data_dir=tmp_path))
    assert sorted(served - set(EXPECTED)) == [], "a route without an expected answer for every caller"
    assert sorted(set(EXPECTED) - served) == [], "an expected answer for a route no service serves"


class ToServices(httpx.AsyncBaseTransport):
    """The gateway's upstream calls, delivered to the services' apps in this process by port."""

    def __init__(self, by_port: dict[int, FastAPI]) -> None:
        self._by_port = {port: httpx.ASGITransport(app=app) for port, app in by_port.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._by_port[request.url.port or 80].handle_async_request(request)


@dataclass
class Cloud:
    gateway: httpx.AsyncClient
    apps: dict[str, FastAPI]
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)

    def as_(self, who: str) -> dict[str, str]:
        return {} if who == "anonymous" else {"Authorization": f"Bearer {self.tokens[who]}"}


async def _publish(mosquitto: tuple[str, int], topics: Topics, *envelopes: Envelope) -> None:
    async with aiomqtt.Client(*mosquitto, username="site-test") as client:
        for envelope in envelopes:
            await client.publish(topics.up_for_type(envelope.site_id, envelope.type), envelope.to_bytes(), qos=1)


@pytest.fixture
async def cloud(tmp_path: Path, mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[Cloud]:
    settings = CloudSettings(data_dir=tmp_path, database_url="", amqp_url="", mqtt_host=mosquitto[0],
                             mqtt_port=mosquitto[1], mqtt_username="evpark-cloud", mqtt_topic_root=topic_root,
                             rate_limit_public_per_minute=10_000)  # one address asks the whole table
    bus, cache = InProcessBus(), MemoryCache()
    await bus.start()
    apps = {spec.name: spec.build_app(settings, bus=bus, cache=cache) for spec in domain_services()}
    async with contextlib.AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        accounts = httpx.AsyncClient(transport=httpx.ASGITransport(app=apps["accounts"]), base_url="http://accounts")
        stack.push_async_callback(accounts.aclose)
        # the issuer's keys, as every service would fetch them from /.well-known/jwks.json
        verifier = TokenVerifier(issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                                 jwks=(await accounts.get("/.well-known/jwks.json")).json())
        for app in apps.values():
            app.state.verifier = app.state.platform.verifier = verifier
        gateway_app = build_gateway(settings, cache=cache, verifier=verifier,
                                    transport=ToServices({settings.port_of(n): a for n, a in apps.items()}))
        await stack.enter_async_context(gateway_app.router.lifespan_context(gateway_app))
        gateway = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway_app), base_url="http://gw", timeout=20)
        stack.push_async_callback(gateway.aclose)
        the_cloud = Cloud(gateway, apps)
        await _accounts_for_every_caller(the_cloud, settings)
        await _vehicles_sessions_and_sites(the_cloud, mosquitto, Topics(topic_root))
        await _tariff_of_site_1(the_cloud)
        await _webhook_of_driver_b(the_cloud)
        yield the_cloud
    await bus.close()


async def _accounts_for_every_caller(cloud: Cloud, settings: CloudSettings) -> None:
    password = "a long passphrase"
    await ensure_admin(settings, "admin@matrix.test", password=password)
    await _log_in(cloud, "admin", "admin@matrix.test", password)
    for who, roles, sites in (("driver_a", ["driver"], []), ("driver_b", ["driver"], []),
                              ("operator_1", ["operator"], ["site-1"]), ("operator_2", ["operator"], ["site-2"]),
                              ("technician_1", ["technician"], ["site-1"])):
        email = f"{who}@matrix.test"
        made = await cloud.gateway.post("/accounts", headers=cloud.as_("admin"), json={
            "email": email, "name": who, "password": password, "roles": roles, "sites": sites})
        assert made.status_code == 201, made.text
        cloud.ids[f"{who}_account"] = made.json()["account_id"]
        await _log_in(cloud, who, email, password)


async def _log_in(cloud: Cloud, who: str, email: str, password: str) -> None:
    answer = await cloud.gateway.post("/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    cloud.tokens[who] = answer.json()["access_token"]


async def _vehicles_sessions_and_sites(cloud: Cloud, mosquitto: tuple[str, int], topics: Topics) -> None:
    for who, plate, tag in (("driver_a", "MX-A", "MXTAGA"), ("driver_b", "MX-B", "MXTAGB")):
        made = await cloud.gateway.post("/vehicles/register", headers=cloud.as_(who),
                                        json={"plate": plate, "id_tags": [tag]})
        assert made.status_code == 201, made.text
        cloud.ids[f"vehicle_{who[-1]}"] = made.json()["vehicle_id"]
    spare = await cloud.gateway.post("/vehicles/register", headers=cloud.as_("driver_b"), json={"plate": "MX-SPARE"})
    assert spare.status_code == 201, spare.text
    cloud.ids["vehicle_spare"] = spare.json()["vehicle_id"]

    async def owners_known() -> bool:
        answers = [await cloud.gateway.get(f"/charging/history/{cloud.ids[key]}", headers=cloud.as_(owner))
                   for key, owner in (("vehicle_a", "driver_a"), ("vehicle_b", "driver_b"))]
        return all(a.status_code == 200 for a in answers)

    await eventually(owners_known, what="the charging service learned whose vehicles they are")
    t0 = datetime.now(UTC) - timedelta(hours=2)
    site_1 = [Envelope.wrap("site-1", 1, SiteInventory(
        bays=[InventoryBay(bay_id="EV-1", type="ev", charger_id="CP-1", connector_id=1)],
        chargers=[InventoryCharger(charger_id="CP-1", connectors=1, max_power_w=11_000)],
        power_limit_a=40.0, phases=3, voltage=230.0))]
    site_2 = [Envelope.wrap("site-2", 1, SiteInventory(bays=[InventoryBay(bay_id="B-1", type="regular")],
                                                       chargers=[], power_limit_a=None, phases=None, voltage=None))]
    for site, tag, envelopes in (("site-1", "MXTAGA", site_1), ("site-2", "MXTAGB", site_2)):
        envelopes += [
            Envelope.wrap(site, 2, SessionStarted(charger_id="CP-1", connector_id=1, transaction_id=7, id_tag=tag,
                                                  id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=0,
                                                  started_at=t0)),
            Envelope.wrap(site, 3, SessionStopped(charger_id="CP-1", transaction_id=7, meter_stop_wh=5_000,
                                                  energy_wh=5_000, stopped_at=t0 + timedelta(hours=1))),
        ]
        await _publish(mosquitto, topics, *envelopes)

    async def seeded() -> bool:
        history = await cloud.gateway.get(f"/charging/history/{cloud.ids['vehicle_a']}", headers=cloud.as_("admin"))
        sites = [await cloud.gateway.get(f"/parking/sites/{s}/chargers", headers=cloud.as_("admin"))
                 for s in ("site-1",)]
        return bool(history.json().get("sessions")) and all(s.status_code == 200 for s in sites)

    await eventually(seeded, what="the sessions and sites reached the services")


async def _tariff_of_site_1(cloud: Cloud) -> None:
    answer = await cloud.gateway.put("/billing/rates/site-1", headers=cloud.as_("admin"), json=SITE_1_TARIFF)
    assert answer.status_code == 200, answer.text


async def _webhook_of_driver_b(cloud: Cloud) -> None:
    answer = await cloud.gateway.post("/notifications/webhooks", headers=cloud.as_("driver_b"),
                                      json={"url": "http://127.0.0.1:9/matrix/b"})
    assert answer.status_code == 201, answer.text
    cloud.ids["webhook_b"] = answer.json()["webhook_id"]


async def test_every_route_answers_each_caller_as_the_table_says(cloud: Cloud) -> None:
    wrong = []
    for (method, _template), (path, body, answers) in EXPECTED.items():
        concrete = path.format(**cloud.ids)
        for who, expected in zip(CALLERS, answers, strict=True):
            payload: Callable[[str], Any] | Any = body(who) if callable(body) else body
            if isinstance(payload, dict):  # "{vehicle_a}" in a body: the id made above
                payload = {k: v.format(**cloud.ids) if isinstance(v, str) else v for k, v in payload.items()}
            answer = await cloud.gateway.request(method, concrete, headers=cloud.as_(who),
                                                 json=payload if payload is not None else None)
            if answer.status_code != expected:
                wrong.append(f"{method} {concrete} as {who}: {answer.status_code} (expected {expected}) "
                             f"{answer.text[:160]}")
    assert wrong == []


async def test_what_each_caller_sees_is_only_theirs(cloud: Cloud) -> None:
    a = cloud.ids["vehicle_a"]
    assert (await cloud.gateway.get("/vehicles?plate=MX-A", headers=cloud.as_("driver_b"))).json() == []
    [mine] = (await cloud.gateway.get("/vehicles?plate=MX-A", headers=cloud.as_("driver_a"))).json()
    assert mine["vehicle_id"] == a and mine["owner_id"] == cloud.ids.get("driver_a_account")
    hidden = await cloud.gateway.get(f"/vehicles/{a}", headers=cloud.as_("driver_b"))
    unknown = await cloud.gateway.get("/vehicles/no-such-vehicle", headers=cloud.as_("driver_b"))
    assert hidden.json()["detail"].replace(a, "X") == unknown.json()["detail"].replace("no-such-vehicle", "X")
    owner_view = (await cloud.gateway.get(f"/charging/history/{a}", headers=cloud.as_("driver_a"))).json()
    operator_view = (await cloud.gateway.get(f"/charging/history/{a}", headers=cloud.as_("operator_1"))).json()
    assert [s["id_tag"] for s in owner_view["sessions"]] == ["MXTAGA"]
    assert [s["id_tag"] for s in operator_view["sessions"]] == [None], "an idTag is enough to clone a card"
    assert "MXTAGA" not in (await cloud.gateway.get(f"/charging/status/{a}", headers=cloud.as_("operator_1"))).text


def forged_tokens(good: str) -> dict[str, str]:
    claims = jwt.decode(good, options={"verify_signature": False})
    header = jwt.get_unverified_header(good)
    foreign = Ed25519PrivateKey.generate()

    def signed(**changes: Any) -> str:
        return jwt.encode({**claims, **changes}, foreign, algorithm="EdDSA", headers={"kid": header["kid"]})

    now = int(datetime.now(UTC).timestamp())
    return {
        "expired": signed(exp=now - 3600, iat=now - 7200),
        "forged": good.rsplit(".", 1)[0] + "." + signed().rsplit(".", 1)[1],
        "alg none": jwt.encode(claims, None, algorithm="none", headers={"kid": header["kid"]}),
        "wrong key": signed(),
        "wrong issuer": signed(iss="https://someone-else.example"),
        "wrong audience": signed(aud="another-api"),
    }


async def test_bad_tokens_are_refused_at_the_gateway_and_at_a_service_reached_directly(cloud: Cloud) -> None:
    direct = httpx.AsyncClient(transport=httpx.ASGITransport(app=cloud.apps["vehicles"]), base_url="http://vehicles")
    path = f"/vehicles/{cloud.ids['vehicle_a']}"
    try:
        good = {"Authorization": f"Bearer {cloud.tokens['driver_a']}"}
        assert (await cloud.gateway.get(path, headers=good)).status_code == 200
        assert (await direct.get(path, headers=good)).status_code == 200
        for case, bad in forged_tokens(cloud.tokens["driver_a"]).items():
            token = {"Authorization": f"Bearer {bad}"}
            at_gateway, at_service = await cloud.gateway.get(path, headers=token), await direct.get(path, headers=token)
            assert (case, at_gateway.status_code, at_service.status_code) == (case, 401, 401)
        assert (await direct.get(path)).status_code == 401, "no token, no data, even past the gateway"
    finally:
        await direct.aclose()


async def test_the_api_key_of_an_operator_acts_as_that_operator(cloud: Cloud) -> None:
    made = await cloud.gateway.post(f"/accounts/{cloud.ids['operator_1_account']}/api-keys",
                                    headers=cloud.as_("admin"), json={"name": "dashboard"})
    assert made.status_code == 201, made.text
    key = {"Authorization": f"Bearer {made.json()['api_key']}"}
    assert (await cloud.gateway.get("/parking/sites/site-1/bays", headers=key)).status_code == 200
    assert (await cloud.gateway.get("/parking/sites/site-2/bays", headers=key)).status_code == 404
    assert (await cloud.gateway.get("/accounts", headers=key)).status_code == 403
