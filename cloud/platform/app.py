"""FastAPI app factory every service uses: health, readiness, metrics, problem details, request ids."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from cloud.platform.errors import DomainError
from cloud.platform.identity import Forbidden, Unauthorized
from cloud.platform.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
ReadinessCheck = Callable[[], Awaitable[dict[str, bool]]]


def problem(status: int, title: str, detail: str | None = None, *, type_: str = "about:blank",
            instance: str | None = None, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details response."""
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    if instance is not None:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def create_app(
    service: str,
    *,
    routers: list[APIRouter],
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
    readiness: Callable[[FastAPI], Awaitable[dict[str, bool]]] | None = None,
    description: str = "",
) -> FastAPI:
    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    app = FastAPI(title=f"evpark {service}", description=description, lifespan=_lifespan,
                  version="0.1.0")
    app.state.service_name = service
    install_problem_handlers(app)
    install_request_middleware(app, service)

    @app.get("/health", tags=["ops"], summary="Liveness: the process answers")
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/ready", tags=["ops"], summary="Readiness: database, bus and cache reachable")
    async def ready() -> Response:
        checks = await readiness(app) if readiness is not None else {}
        if all(checks.values()):
            return JSONResponse({"status": "ready", "checks": checks})
        failing = ", ".join(name for name, ok in checks.items() if not ok)
        return problem(503, "Not ready", f"unreachable: {failing}", checks=checks)

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

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
        detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
        return problem(exc.status_code, title, detail, instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return problem(500, "Internal Server Error", "the error was logged; retry later",
                       instance=request.url.path)


def install_request_middleware(app: FastAPI, service: str) -> None:
    @app.middleware("http")
    async def _request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id, service=service)
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "<unmatched>")
            elapsed = time.perf_counter() - started
            HTTP_REQUESTS.labels(service, request.method, template, str(status)).inc()
            HTTP_LATENCY.labels(service, request.method, template).observe(elapsed)
            structlog.contextvars.unbind_contextvars("request_id", "service")
        response.headers["x-request-id"] = request_id
        return response
