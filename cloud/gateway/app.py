"""The API gateway: one front door for drivers and operators.

It checks who is asking (:mod:`cloud.gateway.auth`: an access token, or an API key it exchanges
for one), rate-limits per client, and routes by path prefix to the services of the registry.
Routes a service declares public (``ServiceSpec.public_paths``: login, registration, its keys)
pass without a token. It holds no domain rules; every service checks the token again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import structlog
from fastapi import FastAPI, Request, Response
from starlette.background import BackgroundTask

from cloud.gateway import SPEC
from cloud.gateway.auth import AccountsUnavailable, Authenticator
from cloud.platform.app import create_app, problem
from cloud.platform.identity import TokenVerifier, Unauthorized, bearer_token
from cloud.platform.ports import Cache
from cloud.platform.runtime import build_cache, build_verifier
from cloud.platform.settings import CloudSettings
from cloud.registry import domain_services

log = structlog.get_logger(__name__)


def routes() -> dict[str, str]:
    """First path segment → upstream service, from every registered service's prefixes."""
    found: dict[str, str] = {}
    for spec in domain_services():
        for prefix in spec.prefixes:
            segment = prefix.strip("/")
            if segment in found:
                raise RuntimeError(f"prefix /{segment} is claimed by {found[segment]} and {spec.name}")
            found[segment] = spec.name
    return found

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}
OPEN_PATHS = {"/health", "/ready", "/metrics", "/docs", "/openapi.json", "/docs/oauth2-redirect"}


def public_paths() -> frozenset[str]:
    """Paths served without a token: the platform's probes and docs, and what services declare public."""
    return frozenset({*OPEN_PATHS, *(path for spec in domain_services() for path in spec.public_paths)})


def build_app(settings: CloudSettings, *, cache: Cache | None = None,
              transport: httpx.AsyncBaseTransport | None = None, verifier: TokenVerifier | None = None) -> FastAPI:
    table = routes()
    upstreams = {prefix: settings.upstream_url(service) for prefix, service in table.items()}
    public = public_paths()
    accounts = settings.upstream_url("accounts") if "accounts" in settings.ports else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        the_cache = cache or build_cache(settings)
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(10.0, connect=2.0)) as client:
            app.state.client = client
            app.state.cache = the_cache
            app.state.verifier = verifier or build_verifier(settings)
            app.state.authenticator = Authenticator(app.state.verifier, the_cache, accounts)
            try:
                yield
            finally:
                if cache is None:
                    await the_cache.close()

    async def readiness(app: FastAPI) -> dict[str, bool]:
        checks: dict[str, bool] = {}
        for spec in domain_services():
            try:
                response = await app.state.client.get(f"{settings.upstream_url(spec.name)}/health", timeout=2.0)
                checks[spec.name] = response.status_code == 200
            except httpx.HTTPError:
                checks[spec.name] = False
        checks["cache"] = await app.state.cache.healthy()
        return checks

    routed = ", ".join(f"/{prefix}/*" for prefix in table)
    app = create_app(SPEC.name, routers=[], lifespan=lifespan, readiness=readiness,
                     description=f"Routes {routed} to the evpark services. See each service's /docs for its endpoints.")

    @app.middleware("http")
    async def _guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        if request.url.path not in public:
            token = bearer_token(request)
            try:
                if token is None:
                    raise Unauthorized("send 'Authorization: Bearer <access token or API key>'; "
                                       "POST /auth/login gives a token")
                request.state.forward_token = await request.app.state.authenticator.token_to_forward(
                    token, request.app.state.client)
            except Unauthorized as exc:
                response = problem(401, "Unauthorized", exc.detail, instance=request.url.path)
                response.headers["www-authenticate"] = 'Bearer realm="evpark"'
                return response
            except AccountsUnavailable as exc:
                return problem(503, "Service Unavailable", f"{exc}; retry shortly", instance=request.url.path)
        client = request.client.host if request.client else "unknown"
        window = int(time.time() // 60)
        try:
            count = await request.app.state.cache.incr(f"ratelimit:{client}:{window}", 61.0)
        except Exception as exc:  # cache away: serve rather than lock everybody out
            log.warning("rate limiter unavailable", error=repr(exc))
            count = 0
        if count > settings.rate_limit_per_minute:
            retry_after = str(60 - int(time.time()) % 60)
            response = problem(429, "Too Many Requests",
                               f"more than {settings.rate_limit_per_minute} requests this minute",
                               instance=request.url.path)
            response.headers["retry-after"] = retry_after
            return response
        return await call_next(request)

    @app.api_route("/{prefix}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def route_prefix(prefix: str, request: Request) -> Response:
        """A service's collection itself (``GET /vehicles?plate=``, ``POST /accounts``)."""
        return await route(prefix, None, request)

    @app.api_route("/{prefix}/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                   include_in_schema=False)
    async def route(prefix: str, path: str | None, request: Request) -> Response:
        base = upstreams.get(prefix)
        if base is None:
            return problem(404, "Not Found", f"no service serves /{prefix}", instance=request.url.path)
        client: httpx.AsyncClient = request.app.state.client
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["x-forwarded-for"] = request.client.host if request.client else ""
        forward = getattr(request.state, "forward_token", None)
        if forward is not None:  # an API key was exchanged: the service sees the verified token
            headers["authorization"] = f"Bearer {forward}"
        upstream_request = client.build_request(
            # the raw query string: a repeated parameter (?usage=idle&usage=overstay) keeps every value
            request.method, f"{base}/{prefix}" + ("" if path is None else f"/{path}"), params=request.url.query,
            headers=headers,
            content=await request.body())
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return problem(504, "Gateway Timeout", f"the {table[prefix]} service did not answer in time",
                           instance=request.url.path)
        except httpx.HTTPError:
            return problem(502, "Bad Gateway", f"the {table[prefix]} service is unreachable",
                           instance=request.url.path)
        response_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP}
        return Response(content=await upstream.aread(), status_code=upstream.status_code,
                        headers=response_headers, background=BackgroundTask(upstream.aclose))

    return app
