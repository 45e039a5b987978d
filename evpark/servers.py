"""Running FastAPI apps under uvicorn inside a process we control."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from cloud.platform.http_server import uvicorn_options


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that runs it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: FastAPI, host: str, port: int, *, header_timeout: float = 10.0) -> EmbeddedServer:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5, **uvicorn_options(header_timeout))
    return EmbeddedServer(config)


async def wait_started(server: EmbeddedServer, task: asyncio.Task[None], name: str, limit_s: float = 60) -> None:
    """Wait until ``server`` listens; raise with its name if it failed to start."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while not server.started:
        if task.done():
            raise RuntimeError(f"{name} failed to start; see the log above")
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"{name} did not start within {limit_s:.0f} s")
        await asyncio.sleep(0.05)


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
