"""FastAPI app factory every service uses: health, readiness, ops status, metrics, problem details,
request ids, body limits, CORS; and problem answers (409/413/422) for what the database refuses, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloud.platform.errors import DomainError
from cloud.platform.identity import Forbidden, Unauthorized
from cloud.platform.metrics import HTTP_LATENCY, HTTP_REQUESTS
from cloud.platform.ops import OPS_ROUTES, STATUS_PATH, ErrorWindow, OpsStatus, StatusFigures, status_of
from cloud.platform.settings import CloudSettings

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def problem(status: int, title: str, detail: str | None = None, *, type_: str = "about:blank",
            instance: str | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details response (extra members that are None are left out)."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update({key: value for key, value in extra.items() if value is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def create_app(
    service: str,
    *,
    routers: list[APIRouter],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    readiness: Callable[[FastAPI], Awaitable[dict[str, bool]]] | None = None,
    status: StatusFigures | None = None,
    description: str = "",
    settings: CloudSettings | None = None,
    openapi: bool = True,
    serve_status: bool = True,
) -> FastAPI:
    """The app of one cloud process, with the platform's HTTP guards (:class:`RequestGuard`).

    ``status`` gives the process's own figures for ``GET /status`` (:mod:`cloud.platform.ops`); without
    it the answer has the error rate only. ``serve_status=False`` leaves the route out: the gateway's
    port is the public one, and ``/status`` is for the cluster only."""
    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    limits = settings or CloudSettings.model_construct()
    app = FastAPI(title=f"evpark {service}", description=description, lifespan=_lifespan,
                  version="0.1.0", redirect_slashes=False,  # a redirect would name this process's address
                  openapi_url="/openapi.json" if openapi else None, docs_url="/docs" if openapi else None,
                  redoc_url=None)
    app.state.service_name = service
    app.state.error_window = errors = ErrorWindow()
    install_problem_handlers(app)
    if limits.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(limits.cors_origins), allow_credentials=False,
                           allow_methods=list(METHODS), allow_headers=["authorization", "content-type",
                                                                       "x-request-id"],
                           expose_headers=["x-request-id", "retry-after"], max_age=600)
    app.add_middleware(RequestGuard, service=service, max_body_bytes=limits.max_body_bytes,
                       body_timeout=limits.header_timeout_seconds, errors=errors if serve_status else None)

    @app.get("/health", tags=["ops"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["ops"], summary="Readiness: database, bus and cache reachable",
             responses={503: {"description": "something the process needs is unreachable"}})
    async def ready() -> Response:
        checks = await readiness(app) if readiness is not None else {}
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem(503, "Not ready", f"unreachable: {failing}", checks=checks)

    if serve_status:  # for the cluster only (the gateway routes no /status), so in no API document either
        @app.get(STATUS_PATH, tags=["ops"], summary="Ops figures: outbox, parked, consumer lag, error rate, uplink",
                 include_in_schema=False)
        async def ops_status() -> OpsStatus:
            return status_of(app, await status(app) if status is not None else {})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for router in routers:
        app.include_router(router)
    return app


async def service_readiness(app: FastAPI) -> dict[str, bool]:
    """Readiness of a service built on the platform: database, bus, cache, MQTT link, and each
    supervised background loop (``loop:<name>``, false while it is being restarted)."""
    platform = app.state.platform
    checks = {"database": await platform.db.ping(), "event_bus": await platform.bus.healthy(),
              "cache": await platform.cache.healthy()}
    link = getattr(app.state, "mqtt_link", None)
    if link is not None:
        checks["mqtt"] = link.connected.is_set()
    checks.update(platform.readiness())
    return checks


class BodyTooLarge(StarletteHTTPException):
    """Raised while the body is read (an HTTPException, so FastAPI's body parsing passes it on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyTimeout(StarletteHTTPException):
    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(exc.status, exc.title, exc.detail, instance=request.url.path, code=exc.code)

    @app.exception_handler(Unauthorized)
    async def _unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        response = problem(401, "Unauthorized", exc.detail, instance=request.url.path)
        response.headers["www-authenticate"] = 'Bearer realm="evpark"'
        return response

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return problem(403, "Forbidden", exc.detail, instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body",
             "message": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "Invalid request", detail, instance=request.url.path, errors=errors)

    @app.exception_handler(NulInBody)
    async def _nul(request: Request, exc: NulInBody) -> JSONResponse:
        return problem(422, "Invalid request", str(exc.detail), instance=request.url.path, errors=exc.errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem(exc.status_code, title, detail, instance=request.url.path)

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        # two requests raced to store the same thing: the loser is told it exists, not that we broke
        log.info("integrity conflict answered 409", path=request.url.path, error=str(exc.orig)[:200])
        return problem(409, "Conflict", "it was stored meanwhile by another request; read it, or retry with "
                       "other values", instance=request.url.path)

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        log.info("database refused a value, answered 422", path=request.url.path, error=str(exc.orig)[:200])
        return problem(422, "Invalid request", "a value is out of the range or character set the API accepts",
                       instance=request.url.path)

    @app.exception_handler(DBAPIError)
    async def _dbapi(request: Request, exc: DBAPIError) -> JSONResponse:
        # asyncpg reports a NUL byte or an int64 overflow in a parameter as a DBAPIError wrapping its DataError
        if _is_bad_value(exc.orig):
            log.info("database refused a value, answered 422", path=request.url.path, error=str(exc.orig)[:200])
            return problem(422, "Invalid request", "a value is out of the range or character set the API accepts",
                           instance=request.url.path)
        return _internal(request, exc)

    @app.exception_handler(OverflowError)
    async def _overflow(request: Request, exc: OverflowError) -> JSONResponse:
        return problem(422, "Invalid request", "a number is too large", instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        return _internal(request, exc)


def _is_bad_value(orig: BaseException | None) -> bool:
    if isinstance(orig, OverflowError | UnicodeError | ValueError):
        return True
    name = type(orig).__name__ if orig is not None else ""
    text = str(orig)
    return name in {"DataError", "CharacterNotInRepertoireError", "NumericValueOutOfRangeError",
                    "InvalidTextRepresentationError", "UntranslatableCharacterError"} or "out of int64 range" in text \
        or "0x00" in text or "invalid input for query argument" in text


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", path=request.url.path, exc_info=exc)
    return problem(500, "Internal Server Error", "the error was logged; retry later", instance=request.url.path)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods metrics name; any other is counted as ``OTHER`` (a made-up method is no new series)."""
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")
ROUTE_LABEL = "evpark.route"
"""Scope key a router may set to the bounded route label of a request (the gateway: ``/vehicles/*``)."""


def metric_labels(scope: Scope) -> tuple[str, str]:
    """(method, route template) of a request, both from fixed sets: unmatched paths are ``<unmatched>``."""
    method = scope.get("method", "")
    route = scope.get(ROUTE_LABEL) or getattr(scope.get("route"), "path", None) or "<unmatched>"
    return (method if method in METHODS else "OTHER"), route


def request_id_of(headers: dict[bytes, bytes]) -> str:
    """The caller's ``X-Request-ID`` if it looks like one, else a new one (never a caller's log injection)."""
    given = headers.get(b"x-request-id", b"").decode("latin-1")
    return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


class RequestGuard:
    """The platform's HTTP guard of every process (pure ASGI, so cheap on the hot path).

    Per request: an id (``X-Request-ID``, kept from the caller when well-formed, bound to every log
    line and event; answered back), metrics labelled by route template and a fixed set of methods
    (and, but for the ops routes, counted in ``errors``: the error rate of ``/status``),
    a body of at most ``max_body_bytes`` (413), each part of it within ``body_timeout`` (408), and
    a 422 for a NUL character in the path or query, which no field may hold.
    """

    def __init__(self, app: ASGIApp, *, service: str, max_body_bytes: int, body_timeout: float,
                 errors: ErrorWindow | None = None) -> None:
        self.app = app
        self.service = service
        self.errors = errors
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        request_id = request_id_of(headers)
        scope["evpark.request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id, service=self.service)
        started = time.perf_counter()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                answered = True
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            refusal = self._refusal(scope, headers)
            if refusal is not None:
                await refusal(scope, receive, send_with_id)
                return
            await self.app(scope, self._bounded(receive), send_with_id)
        finally:
            method, route = metric_labels(scope)
            HTTP_REQUESTS.labels(self.service, method, route, str(status if answered else 500)).inc()
            if self.errors is not None and route not in OPS_ROUTES:
                self.errors.record(status if answered else 500)
            HTTP_LATENCY.labels(self.service, method, route).observe(time.perf_counter() - started)
            structlog.contextvars.unbind_contextvars("request_id", "service")

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> JSONResponse | None:
        path = scope.get("path", "")
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return problem(413, "Content Too Large", f"the request body is larger than {self.max_body_bytes} bytes",
                           instance=path)
        raw_query = scope.get("query_string", b"")
        if "\x00" in path or b"%00" in raw_query or b"\x00" in raw_query:
            return problem(422, "Invalid request", "the path or query holds a NUL character", instance=path,
                           errors=[{"field": "path" if "\x00" in path else "query",
                                    "message": "NUL characters are not allowed"}])
        return None

    def _bounded(self, receive: Receive) -> Receive:
        seen = 0
        done = False
        tail = b""
        chunks: list[bytes] = []
        limit, timeout = self.max_body_bytes, self.body_timeout

        async def bounded_receive() -> Message:
            nonlocal seen, done, tail
            if done:
                return await receive()
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(timeout) from None
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
                if holds_nul(tail + chunk):
                    while message.get("more_body", False) and seen <= limit:  # the rest, to name the fields
                        message = await receive()
                        chunks.append(message.get("body", b""))
                        seen += len(chunks[-1])
                    raise NulInBody(nul_fields(b"".join(chunks)))
                tail = (tail + chunk)[-64:]
                done = not message.get("more_body", False)
            else:
                done = True
            return message

        return bounded_receive


_NUL_ESCAPE = re.compile(rb"(\\+)u0000")


class NulInBody(StarletteHTTPException):
    """A string of the body holds a NUL: no field accepts one (PostgreSQL text cannot store it)."""

    def __init__(self, fields: list[str]) -> None:
        named = ", ".join(fields) or "body"
        super().__init__(422, f"{named}: a string holds a NUL character (\\u0000), which no field accepts")
        self.errors = [{"field": f, "message": "NUL characters are not allowed"} for f in fields or ["body"]]


def nul_fields(body: bytes) -> list[str]:
    """The dotted paths (``id_tags.0``) of the JSON strings (keys included) that hold a NUL."""
    try:
        document = json.loads(body)
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, str) and "\x00" in node:
            found.append(".".join(path) or "body")
        elif isinstance(node, dict):
            for key, value in node.items():
                if "\x00" in key:
                    found.append(".".join([*path, key.replace("\x00", "")]) or "body")
                walk(value, [*path, key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*path, str(index)])

    walk(document, [])
    return found[:20]


def holds_nul(body: bytes) -> bool:
    """Whether a (JSON) body holds a NUL: raw, or as the escape ``\\u0000`` (not ``\\\\u0000``, an escaped
    backslash followed by text)."""
    if b"\x00" in body:
        return True
    return any(len(m.group(1)) % 2 == 1 for m in _NUL_ESCAPE.finditer(body))
