"""How every cloud process serves HTTP under uvicorn: a client must finish its headers in time.

uvicorn closes a keep-alive connection that idles between requests, but a connection that never
finishes the headers of a request (or never sends any: "slowloris") it keeps open forever. The
protocol here closes it after ``header_timeout`` seconds. The body is bounded in time and size by
:class:`cloud.platform.app.RequestGuard`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


class HeaderTimeoutH11Protocol(H11Protocol):
    header_timeout: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(self.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_late)  # the next request
        super().data_received(data)
        if self._header_timer is not None and self.cycle is not None and not self.cycle.response_complete:
            self._header_timer.cancel()  # its headers are complete: the app has the request
            self._header_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def _headers_late(self) -> None:
        self._header_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self.transport.is_closing():
            self.transport.close()


def http_protocol(header_timeout: float) -> type[HeaderTimeoutH11Protocol]:
    """The protocol class for ``uvicorn.Config(http=...)``."""
    return type("HeaderTimeoutH11Protocol", (HeaderTimeoutH11Protocol,), {"header_timeout": header_timeout})


def uvicorn_options(header_timeout: float) -> dict[str, Any]:
    """What every cloud process passes to uvicorn."""
    return {"http": http_protocol(header_timeout), "h11_max_incomplete_event_size": 16 * 1024}
