"""The gateway's HTTP/1.1 client to the services: keep-alive connections on asyncio streams and h11.

An :class:`httpx.AsyncBaseTransport`, so tests can put any other transport in its place; about
five times cheaper per request than httpx's default transport (no anyio, no connection-pool
state machine), which is what lets the gateway keep up with the services behind it
(``bench/bench_gateway.py``). Plain ``http://`` only: the services sit on the cluster network;
for an ``https://`` upstream the gateway uses httpx's own transport.

An idle connection is reused only while younger than ``max_idle_s`` (below uvicorn's keep-alive
timeout of 5 s) and not closed by the service; a reused connection that breaks before any answer
raises :class:`httpx.RemoteProtocolError`, which the proxy retries for idempotent requests only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import h11
import httpx

FRAMING = {b"content-length", b"transfer-encoding", b"connection", b"keep-alive"}


@dataclass
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    h11: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


class H11Transport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_idle_per_host: int = 64, max_idle_s: float = 4.0) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._max_idle = max_idle_per_host
        self._max_idle_s = max_idle_s

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _reusable(self, where: tuple[str, int]) -> _Connection | None:
        idle = self._idle.get(where)
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if now - connection.idle_since < self._max_idle_s and not connection.reader.at_eof() \
                    and not connection.writer.is_closing():
                return connection
            connection.close()
        return None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"{request.url.scheme}:// is not served by this transport",
                                            request=request)
        timeouts = request.extensions.get("timeout", {})
        where = (request.url.host, request.url.port or 80)
        body = await request.aread()
        connection = self._reusable(where)
        reused = connection is not None
        if connection is None:
            try:
                async with asyncio.timeout(timeouts.get("connect")):
                    reader, writer = await asyncio.open_connection(*where)
            except TimeoutError:
                raise httpx.ConnectTimeout(f"connecting to {where[0]}:{where[1]} timed out", request=request) from None
            except OSError as exc:
                raise httpx.ConnectError(str(exc), request=request) from None
            connection = _Connection(reader, writer)
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in FRAMING]
        if body or request.method in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
        answered = False
        try:
            async with asyncio.timeout(timeouts.get("read")):
                out = connection.h11.send(h11.Request(method=request.method, target=request.url.raw_path,
                                                      headers=headers)) or b""
                if body:
                    out += connection.h11.send(h11.Data(data=body)) or b""
                out += connection.h11.send(h11.EndOfMessage()) or b""
                connection.writer.write(out)
                head, chunks = None, []
                while True:
                    event = connection.h11.next_event()
                    if event is h11.NEED_DATA:
                        data = await connection.reader.read(65536)
                        connection.h11.receive_data(data)
                        continue
                    if isinstance(event, h11.Response):
                        head, answered = event, True
                    elif isinstance(event, h11.Data):
                        chunks.append(bytes(event.data))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        raise h11.RemoteProtocolError("the service closed the connection")
        except TimeoutError:
            connection.close()
            raise httpx.ReadTimeout("the service did not answer in time", request=request) from None
        except (OSError, h11.ProtocolError) as exc:
            connection.close()
            detail = f"{'a kept-alive' if reused else 'the'} connection broke{'' if answered else ' before an answer'}"
            raise httpx.RemoteProtocolError(f"{detail}: {exc}", request=request) from None
        assert head is not None
        if connection.h11.our_state is h11.DONE and connection.h11.their_state is h11.DONE:
            connection.h11.start_next_cycle()
            connection.idle_since = time.monotonic()
            idle = self._idle.setdefault(where, [])
            if len(idle) < self._max_idle:
                idle.append(connection)
            else:
                connection.close()
        else:
            connection.close()
        return httpx.Response(head.status_code, headers=list(head.headers), content=b"".join(chunks),
                              request=request)
