"""idTag authorization: every 1.6 status, expiry, parentIdTag groups, ConcurrentTx, the offline policy and
the operator's idTag changes, over a real WebSocket with an ``ocpp``-library charger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from ocpp.v16 import call

from edge import Edge, EdgeSettings
from mqtt.envelope import Command
from mqtt.payloads import AuthListEntry, AuthListUpdate, CommandStatus, IdTagStatus
from tests.integration.edge.charger import charger, now_iso

pytestmark = pytest.mark.integration

FUTURE = datetime.now(UTC) + timedelta(days=30)
PAST = datetime.now(UTC) - timedelta(days=1)


async def load_list(edge: Edge, *entries: AuthListEntry) -> None:
    command = Command.new(edge.settings.site_id, AuthListUpdate(version=1, full=True, entries=list(entries)))
    assert await edge.site.handle_command(command) == CommandStatus.ACCEPTED


async def test_authorize_and_start_answer_every_status_of_the_local_list(edge: Edge) -> None:
    await load_list(
        edge,
        AuthListEntry(id_tag="OK", status=IdTagStatus.ACCEPTED, expiry_date=FUTURE),
        AuthListEntry(id_tag="BLOCKED", status=IdTagStatus.BLOCKED),
        AuthListEntry(id_tag="EXPIRED", status=IdTagStatus.EXPIRED),
        AuthListEntry(id_tag="PAST", status=IdTagStatus.ACCEPTED, expiry_date=PAST),
        AuthListEntry(id_tag="INVALID", status=IdTagStatus.INVALID),
        AuthListEntry(id_tag="BUSY", status=IdTagStatus.ACCEPTED),
    )
    async with charger(edge.ocpp_port, "CP-1") as cp, charger(edge.ocpp_port, "CP-2") as other:
        await other.call(call.StartTransaction(connector_id=1, id_tag="BUSY", meter_start=0, timestamp=now_iso()),
                         suppress=False)
        authorized = {tag: (await cp.call(call.Authorize(id_tag=tag), suppress=False)).id_tag_info["status"]
                      for tag in ("OK", "BLOCKED", "EXPIRED", "PAST", "INVALID", "UNKNOWN", "BUSY")}
        started = {}
        for connector, tag in enumerate(("OK", "BLOCKED", "PAST", "UNKNOWN", "BUSY"), start=1):
            answer = await cp.call(call.StartTransaction(connector_id=connector, id_tag=tag, meter_start=0,
                                                         timestamp=now_iso()), suppress=False)
            started[tag] = answer.id_tag_info["status"]

    # OCPP 1.6 §7.2: ConcurrentTx is for a StartTransaction only, never an Authorize
    assert authorized == {"OK": "Accepted", "BLOCKED": "Blocked", "EXPIRED": "Expired", "PAST": "Expired",
                          "INVALID": "Invalid", "UNKNOWN": "Invalid", "BUSY": "Accepted"}
    assert started == {"OK": "Accepted", "BLOCKED": "Blocked", "PAST": "Expired", "UNKNOWN": "Invalid",
                       "BUSY": "ConcurrentTx"}
    relayed = {row.body["id_tag"]: row.body["id_tag_status"] for row in await edge.store.outbox_batch(100)
               if row.type == "session.started" and row.body["charger_id"] == "CP-1"}
    assert relayed == started


async def test_a_blocked_or_expired_group_blocks_or_expires_its_members(edge: Edge) -> None:
    await load_list(
        edge,
        AuthListEntry(id_tag="FLEET-A", status=IdTagStatus.BLOCKED),
        AuthListEntry(id_tag="FLEET-B", status=IdTagStatus.ACCEPTED, expiry_date=PAST),
        AuthListEntry(id_tag="FLEET-C", status=IdTagStatus.ACCEPTED),
        AuthListEntry(id_tag="CAR-A", status=IdTagStatus.ACCEPTED, parent_id_tag="FLEET-A"),
        AuthListEntry(id_tag="CAR-B", status=IdTagStatus.ACCEPTED, parent_id_tag="FLEET-B"),
        AuthListEntry(id_tag="CAR-C", status=IdTagStatus.ACCEPTED, parent_id_tag="FLEET-C"),
    )
    async with charger(edge.ocpp_port, "CP-1") as cp:
        infos = {tag: (await cp.call(call.Authorize(id_tag=tag), suppress=False)).id_tag_info
                 for tag in ("CAR-A", "CAR-B", "CAR-C")}
    assert {tag: info["status"] for tag, info in infos.items()} == {
        "CAR-A": "Blocked", "CAR-B": "Expired", "CAR-C": "Accepted"}
    assert infos["CAR-C"]["parent_id_tag"] == "FLEET-C"


async def test_a_retried_start_on_the_same_connector_is_not_concurrent(edge: Edge) -> None:
    await load_list(edge, AuthListEntry(id_tag="OK", status=IdTagStatus.ACCEPTED))
    timestamp = now_iso()
    async with charger(edge.ocpp_port, "CP-1") as cp:
        answers = [await cp.call(call.StartTransaction(connector_id=1, id_tag="OK", meter_start=5,
                                                       timestamp=timestamp), suppress=False) for _ in range(2)]
    assert [a.id_tag_info["status"] for a in answers] == ["Accepted", "Accepted"]
    assert answers[0].transaction_id == answers[1].transaction_id


@pytest.mark.parametrize(("policy", "cloud_online", "expected"), [
    (True, False, "Accepted"), (True, True, "Invalid"), (False, False, "Invalid")])
async def test_unknown_id_tags_follow_the_offline_policy_only_while_the_cloud_is_unreachable(
        make_settings: Callable[..., EdgeSettings], policy: bool, cloud_online: bool, expected: str) -> None:
    async with Edge(make_settings(offline_accept_unknown_id_tags=policy)) as edge:
        edge.site.cloud_online = lambda: cloud_online  # the uplink's state, without a broker
        await load_list(edge, AuthListEntry(id_tag="BLOCKED", status=IdTagStatus.BLOCKED))
        async with charger(edge.ocpp_port, "CP-1") as cp:
            unknown = await cp.call(call.Authorize(id_tag="STRANGER"), suppress=False)
            blocked = await cp.call(call.Authorize(id_tag="BLOCKED"), suppress=False)
    assert unknown.id_tag_info["status"] == expected
    assert blocked.id_tag_info["status"] == "Blocked"  # a known status is never overridden


async def test_operators_create_block_and_expire_id_tags_through_the_admin_api(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin, \
            charger(edge.ocpp_port, "CP-1") as cp:
        async def status(tag: str) -> str:
            return str((await cp.call(call.Authorize(id_tag=tag), suppress=False)).id_tag_info["status"])

        created = await admin.put("/id-tags/TECH-1", json={"status": "Accepted", "parent_id_tag": "STAFF"})
        assert created.status_code == 200 and created.json()["parent_id_tag"] == "STAFF"
        assert await status("TECH-1") == "Accepted"
        assert (await admin.post("/id-tags/TECH-1/block")).json()["status"] == "Blocked"
        assert await status("TECH-1") == "Blocked"
        await admin.put("/id-tags/TECH-1", json={"status": "Accepted"})
        assert (await admin.post("/id-tags/TECH-1/expire")).status_code == 200
        assert await status("TECH-1") == "Expired"
        assert (await admin.post("/id-tags/NOBODY/block")).status_code == 404
        assert (await admin.put("/id-tags/" + "X" * 21, json={})).status_code == 422
        listed = (await admin.get("/id-tags")).json()
    assert [(t["id_tag"], t["status"]) for t in listed] == [("TECH-1", "Accepted")]
    assert listed[0]["expiry_date"] is not None


async def test_a_transaction_whose_connector_went_available_no_longer_blocks_its_id_tag(edge: Edge) -> None:
    """A charger that lost a transaction (no StopTransaction ever comes) must not lock the driver out."""
    await load_list(edge, AuthListEntry(id_tag="DRIVER", status=IdTagStatus.ACCEPTED))
    async with charger(edge.ocpp_port, "CP-1") as lost, charger(edge.ocpp_port, "CP-2") as other:
        started = await lost.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                        timestamp=now_iso()), suppress=False)
        await lost.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Charging",
                                                timestamp=now_iso()), suppress=False)
        busy = await other.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                      timestamp=now_iso()), suppress=False)
        await other.call(call.StopTransaction(meter_stop=0, timestamp=now_iso(), transaction_id=busy.transaction_id),
                         suppress=False)
        # the charger rebooted and forgot the transaction: its connector is Available again
        await lost.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available",
                                                timestamp=(datetime.now(UTC) + timedelta(seconds=1)).isoformat()),
                        suppress=False)
        free = await other.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                      timestamp=now_iso()), suppress=False)
        # a late stop still closes and relays the session
        await lost.call(call.StopTransaction(meter_stop=900, timestamp=now_iso(),
                                             transaction_id=started.transaction_id), suppress=False)
    assert (busy.id_tag_info["status"], free.id_tag_info["status"]) == ("ConcurrentTx", "Accepted")
    stopped = [row.body for row in await edge.store.outbox_batch(100)
               if row.type == "session.stopped" and row.body["charger_id"] == "CP-1"]
    assert [(s["transaction_id"], s["energy_wh"]) for s in stopped] == [(started.transaction_id, 900)]


async def test_id_tags_are_compared_without_case(edge: Edge) -> None:
    # OCPP 1.6 IdToken is case-insensitive: readers differ in how they print a card's UID
    await load_list(edge, AuthListEntry(id_tag="04A2B3C4", status=IdTagStatus.ACCEPTED),
                    AuthListEntry(id_tag="CARD-b", status=IdTagStatus.BLOCKED))
    async with charger(edge.ocpp_port, "CP-1") as cp, charger(edge.ocpp_port, "CP-2") as other:
        assert (await cp.call(call.Authorize(id_tag="04a2b3c4"), suppress=False)).id_tag_info["status"] == "Accepted"
        assert (await cp.call(call.Authorize(id_tag="card-B"), suppress=False)).id_tag_info["status"] == "Blocked"
        await cp.call(call.StartTransaction(connector_id=1, id_tag="04a2b3c4", meter_start=0, timestamp=now_iso()),
                      suppress=False)
        second = await other.call(call.StartTransaction(connector_id=1, id_tag="04A2B3C4", meter_start=0,
                                                        timestamp=now_iso()), suppress=False)
    assert second.id_tag_info["status"] == "ConcurrentTx", "the same card in other case is the same driver"
    # a differential update in other case changes the entry, it does not add a second one
    update = Command.new(edge.settings.site_id, AuthListUpdate(version=2, full=False, entries=[
        AuthListEntry(id_tag="04a2b3c4", status=IdTagStatus.BLOCKED)]))
    assert await edge.site.handle_command(update) == CommandStatus.ACCEPTED
    entries = [(e.id_tag.upper(), e.status) for e in await edge.store.auth_entries()]
    assert entries == [("04A2B3C4", IdTagStatus.BLOCKED), ("CARD-B", IdTagStatus.BLOCKED)]
