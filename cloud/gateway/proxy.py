"""The gateway's calls to the services: confined paths, timeouts, retries, a breaker per service.

- A path is taken from the raw request line, segment by segment: a ``.``/``..`` segment or an
  encoded ``/`` or ``\\`` (``/parking/..%2Fmetrics``) is refused (404), a NUL (``%00``) is a 422,
  empty segments (``/vehicles/``) are dropped, and each segment is encoded again, so the service
  sees exactly one path under its own prefix.
- The gateway waits ``upstream_timeout_seconds`` for an answer (``command_timeout_seconds`` on a
  service's ``command_paths``); it retries once, and only an idempotent request (GET, HEAD,
  OPTIONS, PUT, DELETE) that could not be delivered (connection refused or dropped).
- A breaker per service (``purgatory``) opens after ``breaker_failures`` consecutive failures
  (unreachable, timed out, or a 5xx answer) and answers a 503 problem with ``Retry-After``
  without calling the service; after ``breaker_reset_seconds`` one request may try again.
- What comes back is the service's answer minus what the gateway never passes on: hop-by-hop
  headers, ``Server``, a redirect (its ``Location`` is the service's internal address: a 502
  instead), and the body of a 5xx (a problem naming the service and the request id instead) — except a
  504 on a command path: the service saying the charger did not answer, passed on as it is and not
  counted by the breaker.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import quote, unquote_to_bytes

import httpx
import structlog
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from cloud.platform.settings import CloudSettings

log = structlog.get_logger(__name__)

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                        "transfer-encoding", "upgrade", "host", "content-length"})
NOT_FORWARDED = HOP_BY_HOP | {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "forwarded",
                              "x-request-id"}
NOT_RETURNED = HOP_BY_HOP | {"server", "location", "content-location", "refresh", "x-powered-by"}
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_SAFE = "!$&'()*+,;=:@~-._"


@dataclass(frozen=True)
class Refusal:
    """The gateway answers itself: a problem with this status, title and detail."""

    status: int
    title: str
    detail: str
    headers: Mapping[str, str] | None = None


def confined_path(raw_path: bytes) -> tuple[str, list[str]] | Refusal:
    """(first segment, the canonical encoded segments after it) of a raw request path."""
    raw = raw_path.split(b"?", 1)[0]
    segments: list[str] = []
    for part in raw.split(b"/"):
        if not part:
            continue
        decoded = unquote_to_bytes(part)
        if b"\x00" in decoded:
            return Refusal(422, "Invalid request", "the path holds a NUL character")
        if decoded in (b".", b"..") or b"/" in decoded or b"\\" in decoded:
            return Refusal(404, "Not Found", "no resource at this path")
        try:
            text = decoded.decode()
        except UnicodeDecodeError:
            return Refusal(404, "Not Found", "no resource at this path")
        segments.append(text)
    if not segments:
        return Refusal(404, "Not Found", "no service serves /")
    return segments[0], [quote(s, safe=_SAFE) for s in segments[1:]]


def template_pattern(template: str) -> re.Pattern[str]:
    """``/charging/chargers/{charger_id}/reset`` → a pattern matching its concrete paths."""
    parts = [("[^/]+" if re.fullmatch(r"\{[^}]+\}", seg) else re.escape(seg)) for seg in template.split("/")]
    return re.compile("/".join(parts) + "$")


class UpstreamFailed(Exception):
    """A service answered 5xx: counted by the breaker, and answered to the caller as a problem."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"answered {response.status_code}")
        self.response = response


class Upstreams:
    def __init__(self, settings: CloudSettings, bases: dict[str, str], command_paths: dict[str, list[str]]) -> None:
        self.bases = bases
        self._timeout = httpx.Timeout(settings.upstream_timeout_seconds, connect=2.0)
        self._command_timeout = httpx.Timeout(settings.command_timeout_seconds, connect=2.0)
        self._commands = {service: [template_pattern(t) for t in templates]
                          for service, templates in command_paths.items()}
        self.breakers = AsyncCircuitBreakerFactory(default_threshold=settings.breaker_failures,
                                                   default_ttl=settings.breaker_reset_seconds,
                                                   exclude=[asyncio.CancelledError])  # the caller left
        self._reset_seconds = settings.breaker_reset_seconds

    def is_command(self, service: str, path: str) -> bool:
        return any(p.match(path) for p in self._commands.get(service, ()))

    def timeout_for(self, service: str, path: str) -> httpx.Timeout:
        if self.is_command(service, path):
            return self._command_timeout
        return self._timeout

    async def send(self, transport: httpx.AsyncBaseTransport, service: str, method: str, path: str, query: bytes,
                   headers: dict[str, str], body: bytes, request_id: str) -> httpx.Response | Refusal:
        """The service's answer (already read), or what the gateway answers instead."""
        url = f"{self.bases[service]}{path}" + (f"?{query.decode('latin-1')}" if query else "")
        timeout = self.timeout_for(service, path)
        try:
            breaker = await self.breakers.get_breaker(service)
            async with breaker:
                response = await self._deliver(transport, method, url, headers, body, timeout)
                # A remote command's 504 is the charger's silence, said by a healthy service: passed on as it is
                # (its problem says what happened) and not counted against the service by the breaker.
                if response.status_code >= 500 and not (response.status_code == 504 and self.is_command(service, path)):
                    raise UpstreamFailed(response)
        except OpenedState as opened:
            retry = max(1, int(opened.opened_at + self._reset_seconds - time.time()) + 1)
            return Refusal(503, "Service Unavailable", f"the {service} service is failing; the gateway stopped "
                           f"calling it for a while; retry in {retry} s", {"retry-after": str(retry)})
        except UpstreamFailed as failed:
            log.warning("service answered an error", upstream=service, status=failed.response.status_code)
            status = failed.response.status_code
            phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
            extra = {"retry-after": failed.response.headers["retry-after"]} \
                if "retry-after" in failed.response.headers else None
            return Refusal(status, phrase, f"the {service} service failed to answer (request id {request_id}); "
                           "retry later", extra)
        except httpx.TimeoutException:
            return Refusal(504, "Gateway Timeout", f"the {service} service did not answer in time")
        except httpx.HTTPError:
            return Refusal(502, "Bad Gateway", f"the {service} service is unreachable")
        if 300 <= response.status_code < 400:
            log.warning("service answered a redirect; not passed on", upstream=service,
                        status=response.status_code, location=response.headers.get("location"))
            return Refusal(502, "Bad Gateway", f"the {service} service answered a redirect, which the gateway "
                           "does not pass on")
        return response

    async def _deliver(self, transport: httpx.AsyncBaseTransport, method: str, url: str, headers: dict[str, str],
                       body: bytes, wait: httpx.Timeout) -> httpx.Response:
        """One call on the transport itself (no client layer: no cookies, redirects or auth to run)."""
        attempts = 2 if method in IDEMPOTENT else 1
        for attempt in range(attempts):
            request = httpx.Request(method, url, headers=headers, content=body,
                                    extensions={"timeout": wait.as_dict()})
            try:
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
                return response
            except (httpx.ConnectError, httpx.RemoteProtocolError):
                if attempt + 1 == attempts:
                    raise
                await asyncio.sleep(0.05)
        raise AssertionError("unreachable")


def returned_headers(response: httpx.Response) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in response.headers.raw if k.decode("latin-1").lower() not in NOT_RETURNED]
