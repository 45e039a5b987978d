"""The charger side of the OCPP tests, written only with the ``ocpp`` library and websockets.

It deliberately shares no code with ``edge``: a shared bug could not hide on both sides.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import quote

from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import RegistrationStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def url(port: int, charger_id: str) -> str:
    return f"ws://127.0.0.1:{port}/ocpp/{quote(charger_id, safe='')}"


@contextlib.asynccontextmanager
async def open_socket(port: int, charger_id: str,
                      subprotocols: tuple[str, ...] = ("ocpp1.6",)) -> AsyncIterator[ClientConnection]:
    async with connect(url(port, charger_id), subprotocols=[Subprotocol(s) for s in subprotocols] or None,
                       open_timeout=5, close_timeout=2) as ws:
        yield ws


@contextlib.asynccontextmanager
async def running(cp: ChargePoint) -> AsyncIterator[ChargePoint]:
    """Run the charger's receive loop (it routes CALLRESULTs to ``cp.call``)."""
    task = asyncio.create_task(cp.start(), name=f"charger:{cp.id}")
    try:
        yield cp
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def charger(port: int, charger_id: str, *, boot: bool = True) -> AsyncIterator[ChargePoint]:
    async with open_socket(port, charger_id) as ws:
        cp = ChargePoint(charger_id, ws, response_timeout=5)
        async with running(cp):
            if boot:
                result = await boot_notification(cp)
                assert result.status == RegistrationStatus.accepted
            yield cp


async def boot_notification(cp: ChargePoint) -> call_result.BootNotification:
    result: call_result.BootNotification = await cp.call(
        call.BootNotification(charge_point_model="Wallbox-22", charge_point_vendor="Acme",
                              charge_point_serial_number="SN-1", firmware_version="1.2.3"),
        suppress=False,
    )
    return result
