"""Killing the edge (SIGKILL) in the middle of a transaction loses nothing: the charger reconnects and
stops it, and the cloud receives one complete session."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from ocpp.v16 import call

from edge.uplink import uplink_client_id
from tests.integration.edge.charger import charger, now_iso
from tests.integration.edge.test_uplink import subscribed
from tests.support import services
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration

EVPARK = Path(sys.executable).with_name("evpark")


class EdgeProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(EVPARK), "edge"], env=self.env, stdout=out, stderr=out)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    async def wait_listening(self, port: int) -> None:
        def up() -> bool:  # a process start is slow on a loaded machine: a generous deadline
            assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
            return services.reachable("127.0.0.1", port, 0.1)

        if not await poll_until(up, within=60):
            pytest.fail(f"the edge did not listen on {port}: {self.log.read_text()[-3000:]}")


@pytest.fixture
def edge_process(tmp_path: Path, mosquitto: tuple[str, int],
                 topic_root: str) -> Iterator[tuple[EdgeProcess, dict[str, str]]]:
    site_id = services.fresh_name("site-")
    env = {**os.environ,
           "EVPARK_EDGE_SITE_ID": site_id, "EVPARK_EDGE_DATA_DIR": str(tmp_path / "edge"),
           "EVPARK_EDGE_OCPP_PORT": str(services.free_port()), "EVPARK_EDGE_ADMIN_PORT": "0",
           "EVPARK_EDGE_MQTT_HOST": mosquitto[0], "EVPARK_EDGE_MQTT_PORT": str(mosquitto[1]),
           "EVPARK_EDGE_MQTT_TOPIC_ROOT": topic_root, "EVPARK_EDGE_ACCEPT_UNKNOWN_CHARGERS": "true",
           "EVPARK_EDGE_LOG_LEVEL": "WARNING"}
    process = EdgeProcess(env, tmp_path / "edge.log")
    try:
        yield process, env
    finally:
        process.kill()


async def test_a_transaction_survives_a_kill_9_of_the_edge_and_reaches_the_cloud_exactly_once(
        edge_process: tuple[EdgeProcess, dict[str, str]]) -> None:
    process, env = edge_process
    port, site_id = int(env["EVPARK_EDGE_OCPP_PORT"]), env["EVPARK_EDGE_SITE_ID"]
    topic = f"{env['EVPARK_EDGE_MQTT_TOPIC_ROOT']}/sites/{site_id}/up/#"
    async with subscribed(int(env["EVPARK_EDGE_MQTT_PORT"]), topic, persistent=True) as cloud:
        process.start()
        await process.wait_listening(port)
        async with charger(port, "CP-1") as cp:
            started = await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=1_000,
                                                          timestamp=now_iso()), suppress=False)
            await cp.call(call.MeterValues(connector_id=1, transaction_id=started.transaction_id, meter_value=[
                {"timestamp": now_iso(), "sampledValue": [{"value": "4000"}]}]), suppress=False)
            process.kill()  # SIGKILL right after the charger got its answers
        process.start()
        await process.wait_listening(port)
        async with charger(port, "CP-1", boot=False) as cp:  # a plain reconnect, no new boot
            stopped = await cp.call(call.StopTransaction(meter_stop=8_500, timestamp=now_iso(),
                                                         transaction_id=started.transaction_id), suppress=False)
            again = await cp.call(call.StopTransaction(meter_stop=8_500, timestamp=now_iso(),
                                                       transaction_id=started.transaction_id), suppress=False)
        await cloud.wait_for(lambda envelopes: any(e.type == "session.stopped" for e in envelopes), within=20)
        await asyncio.sleep(0.5)  # anything duplicated would arrive now
        process.kill()

    assert stopped is not None and again is not None
    session = [e for e in cloud.unique() if e.type.startswith("session.")
               and e.body.get("transaction_id") == started.transaction_id]
    assert [e.type for e in session] == ["session.started", "session.meter", "session.stopped"]
    stop = session[-1].body
    assert (stop["meter_start_wh"], stop["meter_stop_wh"], stop["energy_wh"], stop["reconciled"]) == (
        1_000, 8_500, 7_500, False)
    seqs = [e.seq for e in cloud.unique()]
    assert len(seqs) == len(set(seqs))
    async with aiomqtt.Client("127.0.0.1", int(env["EVPARK_EDGE_MQTT_PORT"]),
                              identifier=uplink_client_id(site_id, env["EVPARK_EDGE_MQTT_TOPIC_ROOT"]),
                              clean_session=True):
        pass
