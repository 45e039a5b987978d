"""The API gateway: one front door for drivers and operators.

Per request, in this order: the platform's guard (:class:`cloud.platform.app.RequestGuard`: request
id, metrics, a body of at most 1 MiB read in time, no NUL), a path confined to one service's
prefix (:func:`cloud.gateway.proxy.confined_path`), who is asking (:mod:`cloud.gateway.auth`: an
access token, or an API key it exchanges for one; routes a service declares public pass without),
the caller's rate limit (:mod:`cloud.gateway.ratelimit`), and the call to the service
(:mod:`cloud.gateway.proxy`: timeouts, retries, a breaker). Routes come from the registry's
prefixes. ``/openapi.json`` and ``/docs`` are every service's API in one
(:mod:`cloud.gateway.openapi`). It holds no domain rules; every service checks the token again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import httpx
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.gateway import SPEC
from cloud.gateway.auth import AccountsUnavailable, Authenticator
from cloud.gateway.openapi import aggregate
from cloud.gateway.proxy import NOT_FORWARDED, Refusal, Upstreams, confined_path, returned_headers
from cloud.gateway.ratelimit import ClientAddress, RateLimiter, RouteClass, route_class
from cloud.gateway.upstream_client import H11Transport
from cloud.platform.app import ROUTE_LABEL, NulInBody, create_app, problem
from cloud.platform.identity import TokenVerifier, Unauthorized, bearer_token
from cloud.platform.ops import STATUS_PATH
from cloud.platform.ports import Cache
from cloud.platform.runtime import build_cache, build_verifier
from cloud.platform.settings import CloudSettings
from cloud.registry import domain_services

log = structlog.get_logger(__name__)

PROXIED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})
OPEN_PATHS = {"/health", "/ready", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect"}
"""Served by the gateway itself. Not ``/status`` (every service's ops figures, for the cluster only): the
gateway has none (its port is the public one), no service may claim it (:func:`routes`), so it is a 404."""
OPENAPI_TTL_S = 60.0


def routes() -> dict[str, str]:
    """First path segment → upstream service, from every registered service's prefixes."""
    found: dict[str, str] = {}
    for spec in domain_services():
        for prefix in spec.prefixes:
            if prefix == STATUS_PATH:
                raise RuntimeError(f"{spec.name} claims {prefix}: that path is every service's ops status, "
                                   "which the gateway must not expose")
            segment = prefix.strip("/")
            if segment in found:
                raise RuntimeError(f"prefix /{segment} is claimed by {found[segment]} and {spec.name}")
            found[segment] = spec.name
    return found


def public_paths() -> frozenset[str]:
    """Paths served without a token: the platform's probes and docs, and what services declare public."""
    return frozenset({*OPEN_PATHS, *(path for spec in domain_services() for path in spec.public_paths)})


def build_app(settings: CloudSettings, *, cache: Cache | None = None,
              transport: httpx.AsyncBaseTransport | None = None, verifier: TokenVerifier | None = None,
              limiter: RateLimiter | None = None) -> FastAPI:
    table = routes()
    specs = domain_services()
    upstreams = Upstreams(settings, {spec.name: settings.upstream_url(spec.name) for spec in specs},
                          {spec.name: list(spec.command_paths) for spec in specs})
    public = public_paths()
    addresses = ClientAddress(settings.trusted_proxies)
    accounts = settings.upstream_url("accounts") if "accounts" in settings.ports else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_cache = cache or build_cache(settings)
        the_transport = transport or (
            H11Transport() if all(url.startswith("http://") for url in upstreams.bases.values())
            else httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)))
        async with httpx.AsyncClient(transport=the_transport, timeout=httpx.Timeout(10.0, connect=2.0),
                                     follow_redirects=False) as client:  # closes the transport too
            app.state.client = client
            app.state.transport = the_transport
            app.state.cache = the_cache
            app.state.verifier = verifier or build_verifier(settings)
            app.state.authenticator = Authenticator(app.state.verifier, the_cache, accounts)
            app.state.limiter = limiter or RateLimiter(settings)
            app.state.openapi = (0.0, None)
            try:
                yield
            finally:
                if cache is None:
                    await the_cache.close()

    async def readiness(app: FastAPI) -> dict[str, bool]:
        async def probe(name: str) -> bool:
            try:
                response = await app.state.client.get(f"{settings.upstream_url(name)}/health", timeout=2.0)
            except httpx.HTTPError:
                return False
            return bool(response.status_code == 200)

        names = [spec.name for spec in specs]
        answers = await asyncio.gather(*(probe(name) for name in names))
        checks = dict(zip(names, answers, strict=True))
        checks["cache"] = await app.state.cache.healthy()
        return checks

    routed = ", ".join(f"/{prefix}/*" for prefix in table)
    app = create_app(SPEC.name, routers=[], lifespan=lifespan, readiness=readiness, settings=settings,
                     openapi=False, serve_status=False, description=f"Routes {routed} to the evpark services.")

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        """Every service's API in one document (fetched from the services, kept a minute)."""
        fetched_at, document = request.app.state.openapi
        if document is None or time.monotonic() - fetched_at > OPENAPI_TTL_S:
            client: httpx.AsyncClient = request.app.state.client

            async def fetch(name: str) -> dict[str, Any] | None:
                try:
                    answer = await client.get(f"{settings.upstream_url(name)}/openapi.json", timeout=5.0)
                    return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]
                except (httpx.HTTPError, ValueError):
                    return None

            names = [spec.name for spec in specs]
            found = dict(zip(names, await asyncio.gather(*(fetch(n) for n in names)), strict=True))
            documents = {name: doc for name, doc in found.items() if doc is not None}
            document = aggregate(documents, specs, public_paths=public)
            missing = sorted(set(names) - set(documents))
            if missing:
                document["info"]["x-unavailable"] = missing
                document["info"]["description"] += f" Not reachable just now, so not listed: {', '.join(missing)}."
            else:
                request.app.state.openapi = (time.monotonic(), document)
        return JSONResponse(document)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="evpark API")

    async def route(request: Request) -> Response:
        """Everything but the gateway's own paths: confined, checked, limited, and sent on."""
        scope = request.scope
        instance = request.url.path
        confined = confined_path(scope.get("raw_path") or scope["path"].encode())
        if isinstance(confined, Refusal):
            return _refusal(confined, instance)
        prefix, rest = confined
        service = table.get(prefix)
        if service is None:
            return problem(404, "Not Found", f"no service serves /{prefix}", instance=instance)
        scope[ROUTE_LABEL] = f"/{prefix}/*"
        path = "/" + "/".join([prefix, *rest])
        state = request.app.state
        peer = request.client.host if request.client else "unknown"
        address = addresses.of(peer, request.headers.get("x-forwarded-for"))
        is_public = path in public
        forward: str | None = None
        identity = f"address:{address}"
        if not is_public:
            token = bearer_token(request)
            try:
                if token is None:
                    raise Unauthorized("send 'Authorization: Bearer <access token or API key>'; "
                                       "POST /auth/login gives a token")
                forward, identity = await state.authenticator.check(token, state.client)
            except Unauthorized as exc:
                # failed authentications count against the address's public budget: no free guessing
                verdict = await state.limiter.hit(RouteClass.PUBLIC, f"address:{address}")
                if not verdict.allowed:
                    return _too_many(verdict.retry_after, verdict.limit, instance)
                response = problem(401, "Unauthorized", exc.detail, instance=instance)
                response.headers["www-authenticate"] = 'Bearer realm="evpark"'
                return response
            except AccountsUnavailable as exc:
                return _refusal(Refusal(503, "Service Unavailable", f"{exc}; retry shortly",
                                        {"retry-after": "5"}), instance)
        verdict = await state.limiter.hit(route_class(request.method, is_public), identity)
        if not verdict.allowed:
            return _too_many(verdict.retry_after, verdict.limit, instance)

        request_id = scope.get("evpark.request_id", "")
        headers = {k: v for k, v in request.headers.items() if k not in NOT_FORWARDED}
        headers["x-forwarded-for"] = address
        headers["x-request-id"] = request_id
        if forward is not None:  # an API key was exchanged: the service sees the verified token
            headers["authorization"] = f"Bearer {forward}"
        answer = await upstreams.send(state.transport, service, request.method, path, scope.get("query_string", b""),
                                      headers, await request.body(), request_id)
        if isinstance(answer, Refusal):
            return _refusal(answer, instance)
        passed = Response(content=answer.content, status_code=answer.status_code)
        passed.raw_headers = [*returned_headers(answer), (b"content-length", str(len(answer.content)).encode())]
        return passed

    # inside the platform's guard and CORS, in front of FastAPI's router: the proxied path is the hot one
    app.user_middleware.append(Middleware(Proxying, handle=route))
    return app


class Proxying:
    """Sends every request for a path the gateway does not serve itself to :func:`route`, as plain ASGI."""

    def __init__(self, app: ASGIApp, *, handle: Callable[[Request], Awaitable[Response]]) -> None:
        self.app = app
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] not in PROXIED_METHODS:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await self.handle(request)
        except StarletteHTTPException as exc:  # the body too large or too slow (RequestGuard)
            title = HTTPStatus(exc.status_code).phrase if exc.status_code in HTTPStatus._value2member_map_ else "Error"
            errors = exc.errors if isinstance(exc, NulInBody) else None
            response = problem(exc.status_code, title, str(exc.detail), instance=scope["path"], errors=errors)
        await response(scope, receive, send)


def _refusal(refusal: Refusal, instance: str) -> Response:
    response = problem(refusal.status, refusal.title, refusal.detail, instance=instance)
    for name, value in (refusal.headers or {}).items():
        response.headers[name] = value
    return response


def _too_many(retry_after: int, limit: int, instance: str) -> Response:
    response = problem(429, "Too Many Requests", f"more than {limit} requests a minute; retry in {retry_after} s",
                       instance=instance)
    response.headers["retry-after"] = str(retry_after)
    return response
