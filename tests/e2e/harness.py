"""Runs evpark as its users do — as processes — and drives it like a charger and a driver."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import websockets
from ocpp.v16 import ChargePoint, call
from ocpp.v16.datatypes import MeterValue, SampledValue
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus

from tests.support.services import reachable

EVPARK = str(Path(sys.executable).with_name("evpark"))


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class System:
    """A running evpark: where its gateway and edge listen, and the processes behind them."""

    gateway: str
    ocpp: str
    mqtt_port: int
    topic_root: str = "evpark"
    headers: dict[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    password_file: Path | None = None
    """Where ``evpark`` wrote the admin's login; once healthy, the system logs in with it."""
    env: dict[str, str] = field(default_factory=dict)
    """The ``EVPARK_*`` settings its processes were started with (on top of the test's environment), for a
    test that runs an operator's command (``evpark analytics rebuild``, ...) against the same system."""
    services: list[str] = field(default_factory=list)
    """Each cloud service's own address (production): the system is healthy once every one is ready."""
    after_ready: list[tuple[str, list[str], dict[str, str], Path]] = field(default_factory=list)
    """Processes (the edge) started by :meth:`wait_healthy` once every service is ready: on a first start,
    an event published before its consumer ever declared its queue is dropped by RabbitMQ (see the README's
    known issues), so the site comes in after the cloud has started, as an operator brings one in."""

    def start(self, name: str, args: list[str], env: dict[str, str], folder: Path) -> Process:
        log = folder / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen([EVPARK, *args], env={**os.environ, **env}, stdout=handle,
                                 stderr=subprocess.STDOUT, cwd=folder)
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def wait_healthy(self, limit_s: float = 120.0) -> None:
        deadline = time.monotonic() + limit_s
        host, port = self.ocpp.removeprefix("ws://").split("/")[0].split(":")
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.popen.poll() is not None:
                    raise RuntimeError(f"{process.name} exited with {process.popen.returncode}:\n{process.tail()}")
            try:
                if self.after_ready and all(httpx.get(f"{url}/ready", timeout=3).status_code == 200
                                            for url in (*self.services, self.gateway)):
                    for name, args, env, folder in self.after_ready:
                        self.start(name, args, env, folder)
                    self.after_ready.clear()
                if (not self.after_ready and httpx.get(f"{self.gateway}/ready", timeout=3).status_code == 200
                        and reachable(host, int(port), 0.5)):
                    if self.password_file is not None and not self.headers:
                        self.log_in(self.password_file)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        logs = "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)
        raise RuntimeError(f"evpark did not become healthy within {limit_s} s\n{logs}")

    def log_in(self, password_file: Path) -> None:
        """Log in with the admin login ``evpark`` wrote (email and password lines); every request
        of the test then carries the admin's access token."""
        email, password = password_file.read_text(encoding="utf-8").split()[:2]
        answer = httpx.post(f"{self.gateway}/auth/login", json={"email": email, "password": password}, timeout=10)
        assert answer.status_code == 200, answer.text
        self.headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM to every running process at once (the last started first), then wait for each: they
        shut down side by side, not one after the other. One still running after ``grace`` is killed."""
        running = [p for p in reversed(self.processes) if p.popen.poll() is None]
        for process in running:
            process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in running:
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.tail()}" for p in self.processes)


@contextlib.contextmanager
def stopping(system: System) -> Iterator[System]:
    try:
        yield system
    finally:
        system.stop()


class LibCharger(ChargePoint):
    """A charger written only with the `ocpp` library: no evpark code on this side."""


@contextlib.asynccontextmanager
async def connect_charger(ocpp_url: str, charger_id: str, kind: type[ChargePoint] = LibCharger) -> Any:
    """An ``ocpp``-library charger (``kind``, a ChargePoint subclass) connected and answering."""
    async with websockets.connect(f"{ocpp_url}/{charger_id}", subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
        charger = kind(charger_id, ws)
        task = asyncio.create_task(charger.start())
        try:
            yield charger
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def now() -> str:
    return datetime.now(UTC).isoformat()


async def register_vehicle(system: System, plate: str, id_tags: list[str]) -> str:
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=10) as client:
        response = await client.post("/vehicles/register", json={"plate": plate, "id_tags": id_tags})
        assert response.status_code == 201, response.text
        return str(response.json()["vehicle_id"])


async def authorize_when_known(charger: LibCharger, id_tag: str, limit_s: float = 20.0) -> float:
    """Authorize until the site's edge knows the idTag; returns how long that took."""
    started = time.monotonic()
    while True:
        result = await charger.call(call.Authorize(id_tag=id_tag))
        if result.id_tag_info["status"] == AuthorizationStatus.accepted:
            return time.monotonic() - started
        if time.monotonic() - started > limit_s:
            raise AssertionError(f"idTag {id_tag} still {result.id_tag_info['status']} after {limit_s} s")
        await asyncio.sleep(0.25)


async def charge(charger: LibCharger, id_tag: str, *, meter_start: int, energy_wh: int,
                 connector_id: int = 1) -> int:
    """Boot was done; start, send a meter value, stop. Returns the transaction id."""
    start = await charger.call(call.StartTransaction(connector_id=connector_id, id_tag=id_tag,
                                                     meter_start=meter_start, timestamp=now()))
    assert start.id_tag_info["status"] == AuthorizationStatus.accepted
    transaction_id = int(start.transaction_id)
    await charger.call(call.MeterValues(
        connector_id=connector_id, transaction_id=transaction_id,
        meter_value=[MeterValue(timestamp=now(), sampled_value=[
            SampledValue(value=str(meter_start + energy_wh // 2))])]))
    await charger.call(call.StopTransaction(meter_stop=meter_start + energy_wh, timestamp=now(),
                                            transaction_id=transaction_id, reason="Local", id_tag=id_tag))
    return transaction_id


async def boot(charger: LibCharger) -> None:
    result = await charger.call(call.BootNotification(charge_point_model="LibModel", charge_point_vendor="LibVendor"))
    assert result.status == RegistrationStatus.accepted, result


async def wait_history(system: System, vehicle_id: str, count: int,
                       limit_s: float) -> tuple[list[dict[str, Any]], float]:
    """Poll the driver's history until ``count`` completed sessions show; returns them and the wait."""
    started = time.monotonic()
    sessions: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=5) as client:
        while time.monotonic() - started < limit_s:
            response = await client.get(f"/charging/history/{vehicle_id}")
            if response.status_code == 200:
                sessions = response.json()["sessions"]
                if len(sessions) >= count:
                    return sessions, time.monotonic() - started
            await asyncio.sleep(0.1)
    raise AssertionError(f"history of {vehicle_id} shows {len(sessions)} sessions after {limit_s} s, "
                         f"expected {count}:\n{system.logs()}")
