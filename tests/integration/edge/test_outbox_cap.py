"""A site offline long enough to fill its outbox: the cap holds, sessions survive, the cloud is told.

An edge with a small cap ([uplink] outbox_max_events) runs a charger session while its broker is
unreachable, with far more meter samples than the cap; then the link returns (the shared
Mosquitto) and the cloud receives: the session complete, the newest meter samples, and one
``site.outbox_dropped`` naming what went. The admin API and the metrics show it meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from ocpp.v16 import call
from prometheus_client import REGISTRY

from edge import Edge, EdgeSettings
from edge.siteconfig import Bay, SiteConfig, Uplink
from edge.store import DROPPABLE_TYPES
from edge.uplink import uplink_client_id
from mqtt import IdTagStatus
from tests.integration.edge.charger import answering_charger, now_iso
from tests.integration.edge.test_uplink import _forget_session, subscribed
from tests.support.waiting import poll_until

pytestmark = pytest.mark.integration

CAP = 60
SAMPLES = 150


def accounted(envelopes: Any) -> int:
    """Samples the cloud knows of: received, or named in a drop report (a sample in both counts twice)."""
    unique = {e.id: e for e in envelopes}.values()
    return (sum(e.body["by_type"].get("session.meter", 0) for e in unique if e.type == "site.outbox_dropped")
            + sum(1 for e in unique if e.type == "session.meter"))


def meter(n: int) -> list[dict[str, Any]]:
    return [{"timestamp": now_iso(), "sampled_value": [{"value": str(n), "unit": "Wh"}]}]


@pytest.mark.parametrize("policy", ["drop_oldest_telemetry", "refuse_new"])
async def test_a_full_outbox_keeps_the_session_and_tells_the_cloud_what_was_dropped(
        make_settings: Callable[..., EdgeSettings], mosquitto: tuple[str, int], topic_root: str,
        offline_port: int, policy: str) -> None:
    online = make_settings(mqtt_host=mosquitto[0], mqtt_port=mosquitto[1], mqtt_topic_root=topic_root)
    offline = online.model_copy(update={"mqtt_port": offline_port})
    config = SiteConfig(site_id=online.site_id, bays=[Bay(id="B1", type="ev", charger_id="CP-1", connector_id=1)],
                        uplink=Uplink(outbox_max_events=CAP, at_cap=policy))  # type: ignore[arg-type]
    before = REGISTRY.get_sample_value("evpark_edge_outbox_dropped_total",
                                       {"type": "session.meter", "policy": policy}) or 0
    async with Edge(offline, config) as edge:
        await edge.site.put_id_tag("TAG1", status=IdTagStatus.ACCEPTED)
        async with answering_charger(edge.ocpp_port, "CP-1") as cp:
            tx: Any = (await cp.call(call.StartTransaction(connector_id=1, id_tag="TAG1", meter_start=0,
                                                           timestamp=now_iso()))).transaction_id
            for n in range(1, SAMPLES + 1):
                await cp.call(call.MeterValues(connector_id=1, transaction_id=tx, meter_value=meter(n)))
            await cp.call(call.StopTransaction(meter_stop=SAMPLES + 1, timestamp=now_iso(), transaction_id=tx))
        # Wait until the upkeep (every second) has enforced the cap and every dropped or refused
        # sample is reported in a site.outbox_dropped row (refuse_new reports at most every
        # REPORT_EVERY (10) s while it keeps refusing, and the rest when the edge stops).
        async def settled() -> bool:
            dropped = edge.store.outbox_status().dropped.get("session.meter", 0)
            if dropped < SAMPLES - CAP:
                return False
            if policy == "drop_oldest_telemetry" and edge.store.outbox_backlog > CAP:
                return False
            reported = sum(row.body["by_type"].get("session.meter", 0)
                           for row in await edge.store.outbox_batch(10_000) if row.type == "site.outbox_dropped")
            return bool(reported == dropped)

        await poll_until(settled, within=40, interval=0.1)  # the assertions below say what is missing
        rows = await edge.store.outbox_batch(10_000)
        waiting = [row.type for row in rows]
        # what the cloud must receive once the link is back (telemetry could still be dropped on the way)
        expected = {row.envelope_id for row in rows if row.type not in DROPPABLE_TYPES}
        # 150 samples did not fit; session and charger records are never dropped nor refused, so
        # under refuse_new the few that came after the cap may pass it
        assert waiting.count("session.meter") < CAP
        assert len(waiting) <= (CAP if policy == "drop_oldest_telemetry" else CAP + 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
            shown = (await admin.get("/uplink")).json()
            scraped = (await admin.get("/metrics")).text  # Prometheus, without the admin token
        assert shown["connected"] is False
        assert shown["outbox"]["backlog"] >= len(waiting)  # a charger's disconnection may come in between
        assert shown["outbox"]["cap"] == {"max_events": CAP, "max_bytes": 512 * 1024 * 1024, "policy": policy}
        assert shown["outbox"]["dropped"]["session.meter"] >= SAMPLES - CAP
        assert shown["outbox"]["oldest_age_s"] > 0
        # nothing was acknowledged, so nothing is kept for a resend yet (defaults: GLOSSARY.md)
        assert shown["retention"] == {"kept": 0, "max_envelopes": 100_000, "days": 7.0}
        gauges = {line.split(" ")[0]: float(line.split(" ")[1]) for line in scraped.splitlines()
                  if line.startswith("evpark_edge_outbox_") and "{" not in line}
        assert gauges["evpark_edge_outbox_backlog"] >= len(waiting)
        assert gauges["evpark_edge_outbox_bytes"] > 0
        assert gauges["evpark_edge_outbox_oldest_age_seconds"] > 0
        assert f'evpark_edge_outbox_dropped_total{{policy="{policy}",type="session.meter"}}' in scraped

    dropped = REGISTRY.get_sample_value("evpark_edge_outbox_dropped_total",
                                        {"type": "session.meter", "policy": policy})
    assert dropped is not None and dropped - before >= SAMPLES - CAP
    topic = f"{topic_root}/sites/{online.site_id}/up/#"
    try:
        # At reconnect the rows queued at start-up (hello, inventory) can push the backlog to the cap
        # again while the replayed window waits for its PUBACKs: the upkeep must not drop and report
        # samples already on their way (they would count twice in the cloud, sent and dropped).
        async with subscribed(online.mqtt_port, topic) as subscriber, Edge(online, config) as edge:
            # Everything the offline edge kept, not just the first report: a later one may follow the stop.
            # And every sample either received or reported: a drop at reconnect sends a report of its own.
            await subscriber.wait_for(lambda envelopes: any(e.type == "session.stopped" for e in envelopes)
                                      and any(e.type == "site.outbox_dropped" for e in envelopes)
                                      and expected <= {e.id for e in envelopes}
                                      and accounted(envelopes) >= SAMPLES, within=30)
    finally:
        await _forget_session(online.mqtt_port, uplink_client_id(online.site_id, online.mqtt_topic_root))

    received = subscriber.unique()
    types = [e.type for e in received]
    assert types.count("session.started") == 1 and types.count("session.stopped") == 1, "a session was lost"
    energies = [e.body["energy_register_wh"] for e in received if e.type == "session.meter"]
    reports = [e.body for e in received if e.type == "site.outbox_dropped"]
    assert sum(r["by_type"].get("session.meter", 0) for r in reports) + len(energies) == SAMPLES, \
        f"every sample is either sent or reported: {energies} {reports}"
    assert all(r["policy"] == policy for r in reports)
    if policy == "drop_oldest_telemetry":  # the newest survive
        assert energies == list(range(SAMPLES - len(energies) + 1, SAMPLES + 1))
    else:  # the oldest survive; what came at the cap was refused
        assert energies == list(range(1, len(energies) + 1))
    seqs = [e.seq for e in received]
    assert seqs == sorted(seqs), "replayed in order"
