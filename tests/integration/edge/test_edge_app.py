"""The composition root: start, expose the real port, stop cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

import pytest
from ocpp.v16 import call
from prometheus_client import REGISTRY

from edge import Edge, EdgeSettings, app, run_edge
from tests.integration.edge.charger import charger
from tests.support import services
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration


async def listening(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True


async def wait_until_listening(port: int, task: asyncio.Task[None]) -> None:
    async def up() -> bool:
        if task.done():  # run_edge failed: show why instead of waiting for a port
            task.result()
            pytest.fail("run_edge returned before it listened")
        return await listening(port)

    if not await poll_until(up, within=30):
        pytest.fail(f"nothing listens on port {port}")


async def test_edge_binds_a_free_port_runs_its_loops_as_named_tasks_and_closes_them(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings()) as edge:
        assert edge.ocpp_port > 0
        assert {name: task.get_name() for name, task in edge.tasks.items()} == {
            "ocpp-server": "edge.ocpp-server", "liveness": "edge.liveness", "uplink": "edge.uplink",
            "outbox-maintenance": "edge.outbox-maintenance", "sessions-report": "edge.sessions-report",
            "admin-api": "edge.admin-api"}
        assert edge.admin_port > 0
        before = REGISTRY.get_sample_value("evpark_edge_ocpp_messages_total", {"action": "Heartbeat"}) or 0
        async with charger(edge.ocpp_port, "CP-1") as cp:
            await cp.call(call.Heartbeat(), suppress=False)
            assert (REGISTRY.get_sample_value("evpark_edge_connected_chargers") or 0) >= 1
        assert REGISTRY.get_sample_value("evpark_edge_ocpp_messages_total", {"action": "Heartbeat"}) == before + 1
        tasks = list(edge.tasks.values())
        port = edge.ocpp_port
    assert all(task.done() for task in tasks)
    assert not await listening(port)
    with pytest.raises(RuntimeError, match="not running"):
        _ = edge.store


async def test_run_edge_serves_until_sigterm(make_settings: Callable[..., EdgeSettings],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app, "configure_logging", lambda *args, **kwargs: None)  # keep test logging as it is
    port = services.free_port()
    task = asyncio.create_task(run_edge(make_settings(ocpp_port=port)))
    await wait_until_listening(port, task)
    async with charger(port, "CP-1") as cp:
        await cp.call(call.Heartbeat(), suppress=False)
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # never kill the test run itself
        task.cancel()
        pytest.fail("run_edge installed no SIGTERM handler")
    signal.raise_signal(signal.SIGTERM)
    async with asyncio.timeout(30):
        await task  # returns normally: a SIGTERM is a clean stop
    assert not await listening(port)


async def test_a_tcp_health_probe_is_not_logged_as_an_error(edge: Edge, caplog: pytest.LogCaptureFixture) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", edge.ocpp_port)
    writer.close()
    await writer.wait_closed()
    async with charger(edge.ocpp_port, "CP-1") as cp:  # the server is fine afterwards
        await cp.call(call.Heartbeat(), suppress=False)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
