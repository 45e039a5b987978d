"""The edge's local admin HTTP API (FastAPI) for operators and technicians at the site.

Routes are thin: parse, call one :class:`edge.site.Site` method, map its errors to RFC 9457
problem details. A bearer token (``EVPARK_EDGE_ADMIN_TOKEN``) protects every route except
``/health`` and ``/metrics`` (Prometheus); without a token the API only binds to a loopback address (see
:class:`edge.settings.EdgeSettings`). ``edge/ADMIN.md`` documents it for the README.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.bayusage import BayUsageTracker
from edge.loadmgmt import LoadManager
from edge.metrics import OUTBOX_OLDEST_AGE
from edge.site import (
    CHARGER_ACTIONS,
    ChargerCallRefused,
    ChargerCallTimeout,
    ChargerNotAccepted,
    ChargerNotConnected,
    Site,
)
from edge.store import ChargerRecord, TransactionRecord
from edge.uplink import Uplink
from mqtt.payloads import IdTagStatus

PROBLEM = "application/problem+json"


class Problem(Exception):
    """An RFC 9457 problem: raised by a route, rendered by the app's handler."""

    def __init__(self, status: int, title: str, detail: str | None = None, *, type_: str = "about:blank",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail, self.type, self.headers = status, title, detail, type_, headers


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {"type": problem.type, "title": problem.title, "status": problem.status,
                            "instance": request.url.path}
    if problem.detail:
        body["detail"] = problem.detail
    return JSONResponse(body, status_code=problem.status, media_type=PROBLEM, headers=problem.headers)


# --- request and response bodies ----------------------------------------------------------


class AuthKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    authorization_key: str = Field(min_length=16, max_length=40, description="the charger's AuthorizationKey")
    security_profile: int = Field(default=1, ge=1, le=2, description="1: Basic auth; 2: TLS and Basic auth")


class SecurityProfileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    security_profile: int = Field(ge=1, le=3, description="1 or 2 (a key stored first), or 3: a client certificate "
                                                          "of the charger CA whose subject CN is the charger id")


class IdTagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: IdTagStatus = IdTagStatus.ACCEPTED
    expiry_date: datetime | None = None
    parent_id_tag: str | None = Field(default=None, max_length=20)


def _charger(record: ChargerRecord, connected: bool) -> dict[str, Any]:
    return {"id": record.id, "vendor": record.vendor, "model": record.model, "serial_number": record.serial,
            "firmware_version": record.firmware, "registration_status": record.registration_status,
            "security_profile": record.security_profile, "connected": connected,
            "last_seen": record.last_seen.isoformat() if record.last_seen else None,
            "firmware_status": record.firmware_status, "diagnostics_status": record.diagnostics_status,
            "local_list_version": record.local_list_version}


def _session(t: TransactionRecord) -> dict[str, Any]:
    return {"transaction_id": t.id, "charger_id": t.charger_id, "connector_id": t.connector_id, "id_tag": t.id_tag,
            "id_tag_status": t.id_tag_status, "state": t.state, "meter_start_wh": t.meter_start,
            "meter_stop_wh": t.meter_stop, "started_at": t.started_at.isoformat(),
            "stopped_at": t.stopped_at.isoformat() if t.stopped_at else None, "reason": t.reason,
            "reservation_id": t.reservation_id, "clock_suspect": t.clock_suspect}


# --- the app --------------------------------------------------------------------------------


def _authenticated(request: Request) -> None:
    token: str | None = request.app.state.admin_token
    if token is None:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <EVPARK_EDGE_ADMIN_TOKEN>",
                      headers={"WWW-Authenticate": "Bearer"})


Auth = Annotated[None, Depends(_authenticated)]


class PowerLimitIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit_a: float | None = Field(default=None, ge=0, le=10_000,
                                  description="the site limit in amps per phase; 0 pauses every session")
    limit_w: float | None = Field(default=None, ge=0, le=10_000_000, description="or in watts")


def build_admin_app(site: Site, *, token: str | None, load_manager: LoadManager | None = None,
                    uplink: Uplink | None = None, bay_usage: BayUsageTracker | None = None) -> FastAPI:
    """The admin API of one site. ``token`` None means no authentication (loopback only)."""

    app = FastAPI(title="evpark edge admin API", version="1", docs_url="/docs", redoc_url=None)
    app.state.admin_token = token

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(request, Problem(exc.status_code, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return problem_response(request, Problem(422, "Invalid request", detail))

    async def charger_or_404(charger_id: str) -> ChargerRecord:
        record = await site.store.get_charger(charger_id)
        if record is None:
            raise Problem(404, "Unknown charger", f"no charger {charger_id!r} is registered")
        return record

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness of the admin API (no token needed)."""
        return {"status": "ok"}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        """Prometheus metrics of the edge (no token needed: counts and gauges, no secrets)."""
        if uplink is not None:  # the age of the oldest waiting envelope, as of this scrape
            OUTBOX_OLDEST_AGE.set(site.store.outbox_status().age_seconds(datetime.now(UTC)))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/chargers")
    async def list_chargers(_: Auth) -> list[dict[str, Any]]:
        """Every known charger, with its registration, security profile and connection."""
        async with site.store.transaction() as tx:
            records = await tx.chargers()
        return [_charger(r, site.chargers.is_connected(r.id)) for r in records]

    @app.get("/chargers/{charger_id}")
    async def get_charger(charger_id: str, _: Auth) -> dict[str, Any]:
        """One charger with its connectors, reservations and charging profiles."""
        record = await charger_or_404(charger_id)
        async with site.store.transaction() as tx:
            connectors = await tx.connectors(charger_id)
            reservations = await tx.reservations(charger_id)
            profiles = await tx.charging_profiles(charger_id)
        return {**_charger(record, site.chargers.is_connected(charger_id)),
                "connectors": [_connector(c) for c in connectors], "reservations": reservations,
                "charging_profiles": profiles}

    @app.put("/chargers/{charger_id}", status_code=201)
    async def register_charger(charger_id: str, _: Auth) -> dict[str, Any]:
        """Make a charger id known, so it may connect when unknown chargers are refused."""
        await site.store.register_charger(charger_id)
        return _charger(await charger_or_404(charger_id), site.chargers.is_connected(charger_id))

    @app.get("/chargers/{charger_id}/connectors")
    async def list_connectors(charger_id: str, _: Auth) -> list[dict[str, Any]]:
        """Connector states of a charger (connector 0 is the whole charger)."""
        await charger_or_404(charger_id)
        async with site.store.transaction() as tx:
            return [_connector(c) for c in await tx.connectors(charger_id)]

    @app.get("/chargers/{charger_id}/events")
    async def list_events(charger_id: str, _: Auth, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Firmware, diagnostics, log and security notifications the charger sent (newest first)."""
        async with site.store.transaction() as tx:
            return await tx.charger_events(charger_id, limit)

    @app.get("/chargers/{charger_id}/calls")
    async def list_calls(charger_id: str, _: Auth, limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """CALLs sent to the charger and its answers (newest first)."""
        async with site.store.transaction() as tx:
            return await tx.charger_calls(charger_id, limit)

    @app.post("/chargers/{charger_id}/accept")
    async def accept_charger(charger_id: str, _: Auth) -> dict[str, Any]:
        """Accept a Pending charger; a connected one is asked to boot again (TriggerMessage)."""
        try:
            triggered = await site.accept_charger(charger_id)
        except LookupError as exc:
            raise Problem(404, "Unknown charger", str(exc)) from None
        return {"charger_id": charger_id, "registration_status": "Accepted", "boot_triggered": triggered}

    @app.put("/chargers/{charger_id}/auth-key", status_code=204)
    async def set_auth_key(charger_id: str, body: AuthKeyIn, _: Auth) -> None:
        """Set the charger's AuthorizationKey and Security Profile (1 or 2; never downgraded)."""
        try:
            await site.set_auth_key(charger_id, body.authorization_key, body.security_profile)
        except ValueError as exc:
            raise Problem(409, "Security profile conflict", str(exc)) from None

    @app.put("/chargers/{charger_id}/security-profile", status_code=204)
    async def set_security_profile(charger_id: str, body: SecurityProfileIn, _: Auth) -> None:
        """Raise the charger's Security Profile (3: client certificate; never downgraded)."""
        try:
            await site.set_security_profile(charger_id, body.security_profile)
        except ValueError as exc:
            raise Problem(409, "Security profile conflict", str(exc)) from None

    @app.post("/chargers/{charger_id}/calls/{action}")
    async def call_charger(charger_id: str, action: str, payload: dict[str, Any], _: Auth,
                           answer_within: float | None = Query(None, gt=0, le=300)) -> dict[str, Any]:
        """Send a central system → charger CALL (OCPP 1.6 payload, camelCase) and return the answer."""
        if action not in CHARGER_ACTIONS:
            raise Problem(404, "Unknown action", f"{action!r} is not a central system → charger action of "
                          f"OCPP 1.6; one of {', '.join(sorted(CHARGER_ACTIONS))}")
        try:
            answer = await site.call_charger(charger_id, action, payload, origin="admin", answer_within=answer_within)
        except ChargerNotConnected as exc:
            raise Problem(409, "Charger not connected", str(exc)) from None
        except ChargerNotAccepted as exc:
            raise Problem(409, "Charger not accepted", str(exc)) from None
        except ChargerCallRefused as exc:
            raise Problem(422, "Invalid OCPP request", str(exc)) from None
        except ChargerCallTimeout as exc:
            raise Problem(504, "Charger did not answer", str(exc)) from None
        return {"charger_id": charger_id, "action": action, **answer.as_dict()}

    @app.get("/sessions")
    async def list_sessions(_: Auth, charger_id: str | None = None,
                            state: str | None = Query(None, pattern="^(active|stopped)$"),
                            limit: int = Query(100, ge=1, le=1000)) -> list[dict[str, Any]]:
        """Charging sessions (transactions), newest first."""
        async with site.store.transaction() as tx:
            return [_session(t) for t in await tx.transactions(charger_id=charger_id, state=state, limit=limit)]

    @app.get("/id-tags")
    async def list_id_tags(_: Auth) -> list[dict[str, Any]]:
        """The local authorization list."""
        return [_id_tag(e) for e in await site.store.auth_entries()]

    @app.put("/id-tags/{id_tag}")
    async def put_id_tag(id_tag: str, body: IdTagIn, _: Auth) -> dict[str, Any]:
        """Create or change an idTag locally (the cloud's next full list replaces local changes)."""
        if not 1 <= len(id_tag) <= 20:
            raise Problem(422, "Invalid idTag", "an OCPP 1.6 idTag has 1 to 20 characters")
        if body.expiry_date is not None and body.expiry_date.tzinfo is None:
            raise Problem(422, "Invalid request", "expiry_date must carry a UTC offset")
        return _id_tag(await site.put_id_tag(id_tag, status=body.status, expiry_date=body.expiry_date,
                                             parent_id_tag=body.parent_id_tag))

    @app.post("/id-tags/{id_tag}/block")
    async def block_id_tag(id_tag: str, _: Auth) -> dict[str, Any]:
        """Block an idTag: Authorize and StartTransaction answer Blocked."""
        try:
            return _id_tag(await site.block_id_tag(id_tag))
        except LookupError as exc:
            raise Problem(404, "Unknown idTag", str(exc)) from None

    @app.post("/id-tags/{id_tag}/expire")
    async def expire_id_tag(id_tag: str, _: Auth) -> dict[str, Any]:
        """Expire an idTag now: Authorize and StartTransaction answer Expired."""
        try:
            return _id_tag(await site.expire_id_tag(id_tag))
        except LookupError as exc:
            raise Problem(404, "Unknown idTag", str(exc)) from None

    def manager() -> LoadManager:
        if load_manager is None:
            raise Problem(404, "No load management", "the site file has no [power] table")
        return load_manager

    @app.get("/power")
    async def power(_: Auth) -> dict[str, Any]:
        """The site limit and what each transaction in progress was given (amps per phase). A
        transaction whose charger refused its profile is listed ``managed: false``, with what is
        set aside for it."""
        lm = manager()
        given = [{"charger_id": c, "connector_id": n, "transaction_id": t, "limit_a": a, "managed": True}
                 for (c, n, t), a in lm.sent.items()]
        aside = [{"charger_id": c, "connector_id": n, "transaction_id": t, "limit_a": a, "managed": False}
                 for (c, n, t), a in lm.set_aside.items() if (c, n, t) not in lm.sent]
        return {"limit_a": lm.limit_a, "transactions": sorted(
            given + aside, key=lambda t: (t["charger_id"], t["connector_id"], t["transaction_id"]))}

    @app.put("/power/limit")
    async def set_power_limit(body: PowerLimitIn, _: Auth) -> dict[str, Any]:
        """Change the site limit now and keep it across restarts (until the site file's own limit is
        edited); re-plans at once. Give limit_a (amps per phase) or limit_w (watts)."""
        manager()
        try:  # the load manager's own rule: exactly one of the two
            amps = await site.set_power_limit(limit_a=body.limit_a, limit_w=body.limit_w, origin="admin API")
        except ValueError as exc:
            raise Problem(422, "Invalid request", f"limit_a: {exc}") from None
        return {"limit_a": amps, "configured_limit_a": manager().configured_limit_a}

    @app.get("/uplink")
    async def uplink_status(_: Auth) -> dict[str, Any]:
        """The link to the cloud: connected, the outbox backlog (size, bytes, oldest), its cap, drops, and the
        acknowledged envelopes kept for a resend (``retention``)."""
        store = site.store
        status = store.outbox_status().as_dict(datetime.now(UTC))
        retention = {"kept": await store.sent_count(), "max_envelopes": store.retention.envelopes,
                     "days": store.retention.days}
        return {"connected": uplink.connected.is_set() if uplink is not None else False, "outbox": status,
                "retention": retention}

    @app.get("/bays")
    async def bays(_: Auth) -> dict[str, Any]:
        """Each charger-served bay: its occupancy and usage (charging, idle, overstay, free, unknown)."""
        return {"bays": bay_usage.usage() if bay_usage is not None else []}

    return app


def _connector(c: Any) -> dict[str, Any]:
    return {"connector_id": c.connector_id, "status": c.status, "error_code": c.error_code, "info": c.info,
            "updated_at": c.updated_at.isoformat()}


def _id_tag(e: Any) -> dict[str, Any]:
    return {"id_tag": e.id_tag, "status": str(e.status),
            "expiry_date": e.expiry_date.isoformat() if e.expiry_date else None,
            "parent_id_tag": e.parent_id_tag, "vehicle_id": e.vehicle_id}


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The edge's run_edge owns SIGTERM/SIGINT; uvicorn must not replace its handlers.
        yield


class AdminServer:
    """The admin API's uvicorn server on a socket bound at enter (so port 0 is known at once)."""

    def __init__(self, app: FastAPI, *, host: str, port: int) -> None:
        self._socket = socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                              timeout_graceful_shutdown=2))

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    async def serve(self) -> None:
        try:
            await self._server.serve(sockets=[self._socket])
        finally:
            self._socket.close()

    def stop(self) -> None:
        self._server.should_exit = True
