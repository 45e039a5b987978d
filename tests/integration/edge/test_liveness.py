"""OCPP-NOTES "Status": liveness (WebSocket pings, heartbeat deadline) and per-charger connector states."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ocpp.v16 import call

from edge import Edge, EdgeSettings
from tests.integration.edge.charger import charger, open_socket
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


async def connection_events(edge: Edge, charger_id: str) -> list[dict[str, Any]]:
    return [row.body for row in await edge.store.outbox_batch(1000)
            if row.type == "charger.connection" and row.body["charger_id"] == charger_id]


async def wait_offline(edge: Edge, charger_id: str, within: float) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            events = await connection_events(edge, charger_id)
            if events and not events[-1]["online"]:
                return events[-1]
            await asyncio.sleep(0.05)


async def test_rule_status_a_silent_charger_misses_the_heartbeat_deadline_and_is_marked_offline(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(heartbeat_deadline=0.6, ocpp_ping_interval=0)) as edge, \
            charger(edge.ocpp_port, "CP-1") as cp:
        await cp.call(call.Heartbeat(), suppress=False)
        assert edge.ocpp.connected_chargers == ["CP-1"]
        loop = asyncio.get_running_loop()
        began = loop.time()
        offline = await wait_offline(edge, "CP-1", within=5)
        assert loop.time() - began < 2.5  # bounded: deadline + one check period
        assert offline["reason"] == "heartbeat deadline missed"
        assert edge.ocpp.connected_chargers == []
        events = await connection_events(edge, "CP-1")
    assert [e["online"] for e in events] == [True, False]  # reported once, not again at the close


async def test_rule_status_a_charger_that_stops_answering_pings_is_closed_and_marked_offline(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(ocpp_ping_interval=0.2, ocpp_ping_timeout=0.3, heartbeat_deadline=60)) as edge:
        async with open_socket(edge.ocpp_port, "CP-1") as ws:
            await eventually(lambda: edge.ocpp.connected_chargers, within=20, interval=0.02,
                             what="the charger connected")
            ws.transport.pause_reading()  # a dead link: nothing comes back, not even pongs
            offline = await wait_offline(edge, "CP-1", within=20)
            ws.transport.resume_reading()
        assert edge.ocpp.connected_chargers == []
    assert offline["online"] is False


async def test_rule_status_connector_states_are_kept_per_charger_and_connector_zero_is_the_charger(
        edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1") as one, charger(edge.ocpp_port, "CP-2") as two:
        await one.call(call.StatusNotification(connector_id=0, error_code="NoError", status="Available"),
                       suppress=False)
        await one.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging"),
                       suppress=False)
        await one.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing"),
                       suppress=False)
        await two.call(call.StatusNotification(connector_id=0, error_code="GroundFailure", status="Faulted"),
                       suppress=False)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
            first = (await admin.get("/chargers/CP-1/connectors")).json()
            second = (await admin.get("/chargers/CP-2")).json()
            listed = (await admin.get("/chargers")).json()
    assert [(c["connector_id"], c["status"]) for c in first] == [(0, "Available"), (1, "Finishing")]
    assert [(c["connector_id"], c["status"], c["error_code"]) for c in second["connectors"]] == [
        (0, "Faulted", "GroundFailure")]
    assert [(c["id"], c["connected"]) for c in listed] == [("CP-1", True), ("CP-2", True)]


async def test_rule_status_connector_zero_is_only_available_unavailable_or_faulted(edge: Edge) -> None:
    async with charger(edge.ocpp_port, "CP-1") as one:
        await one.call(call.StatusNotification(connector_id=0, error_code="NoError", status="Available"),
                       suppress=False)
        # A connector-only status on connector 0 is answered, but is not the charger's state.
        answer = await one.call(call.StatusNotification(connector_id=0, error_code="NoError", status="Charging"),
                                suppress=False)
        assert answer is not None
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
            connectors = (await admin.get("/chargers/CP-1/connectors")).json()
    assert [(c["connector_id"], c["status"]) for c in connectors] == [(0, "Available")]
