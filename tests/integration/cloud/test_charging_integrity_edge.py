"""Issue 12 over a real WebSocket and the real Mosquitto: a charger (the ``ocpp`` library's, sharing no code
with the edge) talks to the real edge; the real charging service and its MQTT link keep the sessions, on SQLite
and on PostgreSQL.

- a charger cannot end another charger's session (the stop is answered, kept and shown as an anomaly);
- an edge whose database is replaced (transaction ids from 1 again) makes new sessions, never touching old ones;
- absurd numbers from one site's charger are refused or kept out at the edge and delay another site's session
  by less than a second;
- a session whose stop was lost is closed by reconciliation, with the energy the edge had, within the period.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ocpp.v16 import ChargePoint, call

from cloud.charging.app import session_messages
from cloud.charging.repository import SqlChargingRepository
from cloud.charging.service import ChargingService
from cloud.platform.db import Database
from cloud.platform.mqtt_link import MqttLink
from cloud.platform.outbox import Outbox
from cloud.platform.unit_of_work import sql_units_of_work
from edge import Edge, EdgeSettings
from mqtt import Topics
from tests.integration.cloud.test_session_ingest import NoCache, history_of
from tests.integration.edge.charger import charger, now_iso
from tests.support import services
from tests.support.events import registered
from tests.support.identity import PRINCIPALS
from tests.support.waiting import poll_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]
ADMIN = PRINCIPALS["admin"]


@pytest.fixture
async def cloud(charging_db: Database, mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[ChargingService]:
    box = Outbox(charging_db)
    service = ChargingService(sql_units_of_work(box, SqlChargingRepository), NoCache())  # type: ignore[arg-type]
    link = MqttLink(service="charging", outbox=box, host=mosquitto[0], port=mosquitto[1], topics=Topics(topic_root),
                    categories=["session"], handler=session_messages(service), username="evpark-cloud")
    task = asyncio.create_task(link.run())
    await asyncio.wait_for(link.connected.wait(), 10)
    for vehicle, tag in (("veh-1", "TAG1"), ("veh-2", "TAG2")):
        await service.on_vehicle_registered(registered(vehicle, tag))
    try:
        yield service
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def edge_at(tmp_path: Path, mosquitto: tuple[str, int],
            topic_root: str) -> Callable[..., contextlib.AbstractAsyncContextManager[Edge]]:
    """A running edge of ``site_id`` with its database in ``folder``, linked to the test's broker."""

    @contextlib.asynccontextmanager
    async def start(site_id: str, folder: str = "edge", **overrides: Any) -> AsyncIterator[Edge]:
        settings = EdgeSettings(site_id=site_id, data_dir=tmp_path / folder, ocpp_port=0, admin_enabled=False,
                                mqtt_host=mosquitto[0], mqtt_port=mosquitto[1], mqtt_topic_root=topic_root,
                                mqtt_username=site_id, heartbeat_interval=120, accept_unknown_chargers=True,
                                **overrides)
        async with Edge(settings) as edge:
            assert edge._uplink is not None
            await asyncio.wait_for(edge._uplink.connected.wait(), 10)
            yield edge

    return start


async def start(cp: ChargePoint, id_tag: str, meter_start: int) -> int:
    await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing"))
    answer = await cp.call(call.StartTransaction(connector_id=1, id_tag=id_tag, meter_start=meter_start,
                                                 timestamp=now_iso()))
    return int(answer.transaction_id)


async def stop(cp: ChargePoint, transaction_id: int, meter_stop: int, timestamp: str | None = None) -> Any:
    return await cp.call(call.StopTransaction(meter_stop=meter_stop, timestamp=timestamp or now_iso(),
                                              transaction_id=transaction_id, reason="Local"))


async def sessions(service: ChargingService, vehicle_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(completed, running) sessions of the vehicle, as the REST API shows them to an admin."""
    running = (await service.status(ADMIN, vehicle_id)).sessions
    return await history_of(service, vehicle_id, limit=50), [s.model_dump(mode="json") for s in running]


async def test_a_charger_cannot_end_another_chargers_session(
        cloud: ChargingService, edge_at: Callable[..., Any]) -> None:
    site_id = services.fresh_name("site-")
    async with edge_at(site_id) as edge, charger(edge.ocpp_port, "CP-A") as a, charger(edge.ocpp_port, "CP-B") as b:
        store_id = edge.store.store_id
        transaction_id = await start(a, "TAG1", 0)
        stopped_at = now_iso()  # a retry repeats the message: the same timestamp, even a second later
        for _ in range(2):  # B's stop with A's transaction id, and B retrying it (a lost answer)
            answer = await stop(b, transaction_id, 1, stopped_at)
            assert answer is not None  # a CALLRESULT: B does not retry forever
        record = await edge.store.get_transaction(transaction_id)
        assert record is not None and record.active and record.charger_id == "CP-A"
        await stop(a, transaction_id, 20_000)

        async def completed() -> bool:
            return bool((await sessions(cloud, "veh-1"))[0])

        assert await poll_until(completed, within=10)
        page = await cloud.anomalies(ADMIN, site_id, limit=10, offset=0)
    history, running = await sessions(cloud, "veh-1")
    assert [(s["charger_id"], s["transaction_id"], s["energy_wh"], s["closed_by"]) for s in history] == [
        ("CP-A", transaction_id, 20_000, "stop")]
    assert running == []
    [anomaly] = page.anomalies  # B's retry is not a second one
    assert (anomaly.kind, anomaly.charger_id, anomaly.transaction_id, anomaly.session_id) == (
        "foreign_stop", "CP-B", transaction_id, history[0]["session_id"])
    assert anomaly.store_id == history[0]["store_id"] == store_id


async def test_an_edge_whose_store_is_replaced_makes_new_sessions_that_never_touch_old_ones(
        cloud: ChargingService, edge_at: Callable[..., Any]) -> None:
    site_id = services.fresh_name("site-")
    async with edge_at(site_id, "disk-1") as edge, charger(edge.ocpp_port, "CP1") as cp:
        old_store = edge.store.store_id
        first = await start(cp, "TAG1", 100_000)
        await stop(cp, first, 107_500)
        second = await start(cp, "TAG1", 107_500)  # charging when the disk dies: its stop never comes

        async def old_ones_in() -> bool:
            history, running = await sessions(cloud, "veh-1")
            return len(history) == 1 and len(running) == 1

        assert await poll_until(old_ones_in, within=10)
    async with edge_at(site_id, "disk-2") as edge, charger(edge.ocpp_port, "CP1") as cp:
        new_store = edge.store.store_id
        assert new_store != old_store
        assert await start(cp, "TAG2", 0) == first  # transaction ids start over
        await stop(cp, first, 1_200)
        assert await start(cp, "TAG2", 1_200) == second

        async def new_ones_in() -> bool:
            history, running = await sessions(cloud, "veh-2")
            return len(history) == 1 and len(running) == 1

        assert await poll_until(new_ones_in, within=10)
        await asyncio.sleep(0.5)  # the new store's reconciliation report has come and gone
    old_history, old_running = await sessions(cloud, "veh-1")
    new_history, new_running = await sessions(cloud, "veh-2")
    assert [(s["store_id"], s["transaction_id"], s["energy_wh"]) for s in old_history] == [(old_store, first, 7_500)]
    assert [(s["store_id"], s["transaction_id"]) for s in old_running] == [(old_store, second)]
    assert [(s["store_id"], s["transaction_id"], s["energy_wh"]) for s in new_history] == [
        (new_store, first, 1_200)]
    assert [(s["store_id"], s["transaction_id"]) for s in new_running] == [(new_store, second)]
    assert len({s["session_id"] for s in [*old_history, *old_running, *new_history, *new_running]}) == 4


async def test_absurd_numbers_are_refused_at_the_edge_and_delay_another_site_by_less_than_a_second(
        cloud: ChargingService, edge_at: Callable[..., Any]) -> None:
    bad_site, good_site = services.fresh_name("site-"), services.fresh_name("site-")
    async with edge_at(bad_site, "bad") as bad, edge_at(good_site, "good") as good, \
            charger(bad.ocpp_port, "CP-X") as x, charger(good.ocpp_port, "CP-G") as g:
        transaction_id = await start(x, "TAG1", 1_000)
        good_tx = await start(g, "TAG2", 0)
        # raw frames, as a broken charger writes them: the library would refuse to send some of them
        ws = x._connection
        frames = [
            [2, "m1", "MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": [
                {"timestamp": now_iso(), "sampledValue": [{"value": "99999999999999999999"}]}]}],
            [2, "m2", "MeterValues", {"connectorId": 1, "transactionId": transaction_id, "meterValue": [
                {"timestamp": now_iso(), "sampledValue": [{"value": "1e30"}, {"value": "2500"}]}]}],
            [2, "s1", "StartTransaction", {"connectorId": 2, "idTag": "TAG1", "meterStart": 10**15,
                                           "timestamp": now_iso()}],
            [2, "s2", "StopTransaction", {"transactionId": transaction_id, "meterStop": 99999999999999999999,
                                          "timestamp": now_iso()}],
            [2, "s3", "StopTransaction", {"transactionId": transaction_id, "meterStop": 1e30, "timestamp": now_iso()}],
        ]
        answers: dict[str, list[Any]] = {}
        got_all = asyncio.Event()
        original = x.route_message

        async def capture(raw: str) -> None:
            frame = json.loads(raw)
            if frame[1] in {"m1", "m2", "s1", "s2", "s3"}:
                answers[frame[1]] = frame
                if len(answers) == 5:
                    got_all.set()
                return
            await original(raw)

        x.route_message = capture  # type: ignore[method-assign]
        sent = time.monotonic()
        for frame in frames:
            await ws.send(json.dumps(frame))
        await stop(g, good_tx, 4_000)  # the other site's session ends meanwhile
        await asyncio.wait_for(got_all.wait(), 5)
        x.route_message = original  # type: ignore[method-assign]

        async def good_in() -> bool:
            return bool((await sessions(cloud, "veh-2"))[0])

        assert await poll_until(good_in, within=10, interval=0.01)
        delay = time.monotonic() - sent
        print(f"other site's session in the cloud {delay:.3f} s after the absurd values were sent")
        assert delay < 1.0
        assert [answers[k][0] for k in ("m1", "m2")] == [3, 3]  # MeterValues answered (values kept out)
        assert answers["s1"][0] == answers["s2"][0] == 4  # CALLERROR
        assert answers["s1"][2] == answers["s2"][2] == "PropertyConstraintViolation"
        assert "meterStart" in answers["s1"][3]
        assert answers["s3"][0] == 4 and answers["s3"][2] not in ("InternalError", "GenericError")  # not a number
        record = await bad.store.get_transaction(transaction_id)
        assert record is not None and record.active  # the refused stop ended nothing
        await stop(x, transaction_id, 6_000)  # its real stop

        async def bad_in() -> bool:
            return bool((await sessions(cloud, "veh-1"))[0])

        assert await poll_until(bad_in, within=10)
        page = await cloud.anomalies(ADMIN, bad_site, limit=10, offset=0)
    [bad_session] = (await sessions(cloud, "veh-1"))[0]
    assert bad_session["energy_wh"] == 5_000  # the stop's figure; the absurd values counted nowhere
    assert sorted(a.kind for a in page.anomalies) == ["meter_out_of_range", "meter_out_of_range"]
    assert {a.session_id for a in page.anomalies} == {bad_session["session_id"]}  # pointing at the session


async def test_a_session_whose_stop_was_lost_is_closed_by_reconciliation_with_the_edges_energy(
        cloud: ChargingService, edge_at: Callable[..., Any]) -> None:
    site_id = services.fresh_name("site-")
    period = 1.0
    async with edge_at(site_id, sessions_report_every=period) as edge, charger(edge.ocpp_port, "CP1") as cp:
        lost = await start(cp, "TAG1", 2_000)
        kept = await start(cp, "TAG2", 0)

        async def both_running() -> bool:
            return bool((await sessions(cloud, "veh-1"))[1]) and bool((await sessions(cloud, "veh-2"))[1])

        assert await poll_until(both_running, within=10)
        # The stop happens at the edge, and its envelope is lost on the way (no session.stopped is sent).
        async with edge.store.transaction() as tx:
            await tx.finish_transaction(lost, meter_stop=11_000, stopped_at=datetime.now(UTC),
                                        reported_stopped_at=now_iso(), stop_id_tag=None, reason="EVDisconnected",
                                        clock_suspect=False)
        lost_at = time.monotonic()

        async def closed() -> bool:
            return bool((await sessions(cloud, "veh-1"))[0])

        assert await poll_until(closed, within=10, interval=0.05)
        waited = time.monotonic() - lost_at
        print(f"lost stop closed by reconciliation {waited:.2f} s after it (report every {period} s)")
        assert waited < period + 1.0
    [session] = (await sessions(cloud, "veh-1"))[0]
    assert (session["energy_wh"], session["stop_reason"], session["closed_by"]) == (9_000, "EVDisconnected",
                                                                                    "reconciliation")
    assert [s["transaction_id"] for s in (await sessions(cloud, "veh-2"))[1]] == [kept]  # still charging
    assert (await cloud.anomalies(ADMIN, site_id, limit=10, offset=0)).anomalies == []  # explained: no anomaly
