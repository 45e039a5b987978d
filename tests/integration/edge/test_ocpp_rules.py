"""OCPP 1.6 rules that independent chargers and a conformance suite tripped on (issue 13), each over a real
WebSocket with an ``ocpp``-library charger. The rule map of ``test_ocpp_notes`` names each test."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from ocpp.v16 import call, call_result
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from edge import Edge, EdgeSettings
from mqtt.envelope import Command
from mqtt.payloads import AuthListEntry, AuthListUpdate, CommandStatus, IdTagStatus
from tests.integration.edge.charger import answering_charger, boot_notification, charger, now_iso

pytestmark = pytest.mark.integration


def later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def load_list(edge: Edge, *id_tags: str) -> None:
    command = Command.new(edge.settings.site_id, AuthListUpdate(version=1, full=True, entries=[
        AuthListEntry(id_tag=tag, status=IdTagStatus.ACCEPTED) for tag in id_tags]))
    assert await edge.site.handle_command(command) == CommandStatus.ACCEPTED


async def outbox(edge: Edge, type_: str) -> list[dict[str, Any]]:
    return [row.body for row in await edge.store.outbox_batch(1000) if row.type == type_]


async def test_rule_authorize_never_answers_concurrent_tx(edge: Edge) -> None:
    """§7.2: ConcurrentTx "is only relevant for a StartTransaction.req"."""
    await load_list(edge, "DRIVER")
    async with charger(edge.ocpp_port, "CP-1") as cp, charger(edge.ocpp_port, "CP-2") as other:
        await cp.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0, timestamp=now_iso()),
                      suppress=False)
        authorized = await other.call(call.Authorize(id_tag="DRIVER"), suppress=False)
        started = await other.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                         timestamp=now_iso()), suppress=False)
    assert authorized.id_tag_info["status"] == "Accepted", "the card reader of another charger lets the driver in"
    assert started.id_tag_info["status"] == "ConcurrentTx", "the start itself is still refused"


async def test_rule_a_session_written_off_never_runs_again_and_its_late_stop_is_reconciled_once(edge: Edge) -> None:
    """A connector that went Available without a StopTransaction ended its session; a later Reserved does
    not bring it back, and the late StopTransaction still ends it with the charger's figures, once."""
    await load_list(edge, "DRIVER")
    async with charger(edge.ocpp_port, "CP-1") as lost, charger(edge.ocpp_port, "CP-2") as other:
        started = await lost.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=100,
                                                        timestamp=now_iso()), suppress=False)
        for offset, status in ((1, "Charging"), (2, "Available"), (3, "Reserved")):
            await lost.call(call.StatusNotification(connector_id=1, error_code="NoError", status=status,
                                                    timestamp=later(offset)), suppress=False)
        elsewhere = await other.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                           timestamp=now_iso()), suppress=False)
        report = await edge.site.report_sessions()
        for _ in range(2):  # the charger's queue delivers the stop late, and once more after a lost answer
            await lost.call(call.StopTransaction(meter_stop=1600, timestamp=later(4), reason="PowerLoss",
                                                 transaction_id=started.transaction_id), suppress=False)
        after = await edge.site.report_sessions()
    assert elsewhere.id_tag_info["status"] == "Accepted", "the written-off session does not block the driver"
    # the cloud keeps the session open (within the grace) for the late stop, then gets its figures once
    assert started.transaction_id in {t.transaction_id for t in report.open}
    stopped = [s for s in await outbox(edge, "session.stopped") if s["charger_id"] == "CP-1"]
    assert [(s["transaction_id"], s["energy_wh"], s["reason"]) for s in stopped] == [
        (started.transaction_id, 1500, "PowerLoss")]
    assert started.transaction_id not in {t.transaction_id for t in after.open}
    assert [t.energy_wh for t in after.ended if t.transaction_id == started.transaction_id] == [1500]
    record = await edge.store.get_transaction(started.transaction_id)
    assert record is not None and record.written_off_reason == "connector_available"


async def test_rule_a_reboot_writes_off_the_chargers_sessions_and_their_tx_profiles(edge: Edge) -> None:
    await load_list(edge, "DRIVER")
    async with answering_charger(edge.ocpp_port, "CP-1") as cp, charger(edge.ocpp_port, "CP-2") as other, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                      timestamp=now_iso()), suppress=False)
        await admin.post("/chargers/CP-1/calls/SetChargingProfile",
                         json={"connectorId": 1, "csChargingProfiles": tx_profile(7, started.transaction_id)})
        assert [p["profile_id"] for p in (await admin.get("/chargers/CP-1")).json()["charging_profiles"]] == [7]
        await boot_notification(cp)  # it rebooted (after a Reset, a power cut...)
        profiles = (await admin.get("/chargers/CP-1")).json()["charging_profiles"]
        elsewhere = await other.call(call.StartTransaction(connector_id=1, id_tag="DRIVER", meter_start=0,
                                                           timestamp=now_iso()), suppress=False)
    assert profiles == [], "a TxProfile ends with its transaction"
    assert elsewhere.id_tag_info["status"] == "Accepted"
    record = await edge.store.get_transaction(started.transaction_id)
    assert record is not None and record.active and record.written_off_reason == "reboot"


def tx_profile(profile_id: int, transaction_id: int | None = None, purpose: str = "TxProfile") -> dict[str, Any]:
    profile: dict[str, Any] = {
        "chargingProfileId": profile_id, "stackLevel": 1, "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Relative",
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]}}
    if transaction_id is not None:
        profile["transactionId"] = transaction_id
    return profile


async def test_rule_tx_profiles_end_with_their_transaction(edge: Edge) -> None:
    """§3.13.2: a TxProfile applies to one transaction; the charger deletes it at the stop. The edge's view
    (and its load management) drops it too; a TxDefaultProfile stays."""
    async with answering_charger(edge.ocpp_port, "CP-1") as cp, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp=now_iso()),
                                suppress=False)
        for connector, profile in ((1, tx_profile(5, started.transaction_id)),
                                   (2, tx_profile(6, purpose="TxDefaultProfile")),
                                   (1, tx_profile(8, purpose="TxDefaultProfile"))):
            answer = await admin.post("/chargers/CP-1/calls/SetChargingProfile",
                                      json={"connectorId": connector, "csChargingProfiles": profile})
            assert answer.json()["kind"] == "result"
        before = [p["profile_id"] for p in (await admin.get("/chargers/CP-1")).json()["charging_profiles"]]
        await cp.call(call.StopTransaction(meter_stop=10, timestamp=now_iso(), transaction_id=started.transaction_id),
                      suppress=False)
        after = [p["profile_id"] for p in (await admin.get("/chargers/CP-1")).json()["charging_profiles"]]
    assert (before, after) == ([5, 6, 8], [6, 8])


async def test_rule_a_stop_without_reason_means_local(edge: Edge) -> None:
    """§7.45: "reason ... may be omitted when the Reason is 'Local'"."""
    async with charger(edge.ocpp_port, "CP-1") as cp, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp=now_iso()),
                                suppress=False)
        await cp.call(call.StopTransaction(meter_stop=10, timestamp=now_iso(), transaction_id=started.transaction_id),
                      suppress=False)
        await cp.call(call.StopTransaction(meter_stop=20, timestamp=now_iso(), transaction_id=9999), suppress=False)
        sessions = (await admin.get("/sessions")).json()
    assert [s["reason"] for s in sessions] == ["Local"]
    assert [(s["transaction_id"], s["reason"]) for s in await outbox(edge, "session.stopped")] == [
        (started.transaction_id, "Local"), (9999, "Local")]


KEY = "0123456789abcdef-old"
NEW_KEY = "fedcba9876543210-new-key"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def handshake(port: int, charger_id: str, headers: dict[str, str] | None = None) -> int:
    try:
        async with connect(f"ws://127.0.0.1:{port}/ocpp/{quote(charger_id, safe='')}", open_timeout=5,
                           subprotocols=[Subprotocol("ocpp1.6")], additional_headers=headers):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_rule_a_new_authorization_key_is_adopted_on_accepted_and_never_shown_in_clear(
        make_settings: Callable[..., EdgeSettings], capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    # Another test in this worker may have routed structlog through stdlib logging at WARNING;
    # the edge's lines then reach caplog, otherwise structlog's default prints them to stdout.
    caplog.set_level(logging.INFO)
    # The ocpp library logs every frame, the key in it, at INFO: edge.logging keeps it at WARNING (as here);
    # the test's own charger uses the same library.
    caplog.set_level(logging.WARNING, logger="ocpp")
    async with Edge(make_settings(accept_unknown_chargers=False)) as edge, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        await edge.site.set_auth_key("CP-1", KEY, 1)
        port = edge.ocpp_port
        async with answering_charger(port, "CP-1", headers=basic("CP-1", KEY)) as cp:
            changed = await admin.post("/chargers/CP-1/calls/ChangeConfiguration",
                                       json={"key": "AuthorizationKey", "value": NEW_KEY})
            assert cp.received[-1] == ("ChangeConfiguration", {"key": "AuthorizationKey", "value": NEW_KEY})
            cp.answers["ChangeConfiguration"] = call_result.ChangeConfiguration(status="Rejected")
            refused = await admin.post("/chargers/CP-1/calls/ChangeConfiguration",
                                       json={"key": "AuthorizationKey", "value": "a-key-it-refuses-00"})
            too_short = await admin.post("/chargers/CP-1/calls/ChangeConfiguration",
                                         json={"key": "AuthorizationKey", "value": "short"})
        calls = (await admin.get("/chargers/CP-1/calls")).json()
        relayed = await outbox(edge, "charger.call")
        # the old key stays valid until the charger's first connection with the new one
        old_before = await handshake(port, "CP-1", basic("CP-1", KEY))
        refused_key = await handshake(port, "CP-1", basic("CP-1", "a-key-it-refuses-00"))
        new = await handshake(port, "CP-1", basic("CP-1", NEW_KEY))
        old_after = await handshake(port, "CP-1", basic("CP-1", KEY))
        new_again = await handshake(port, "CP-1", basic("CP-1", NEW_KEY))
    assert changed.json()["payload"] == {"status": "Accepted"}
    assert refused.json()["payload"] == {"status": "Rejected"}
    assert too_short.status_code == 422, "a key the edge could not check is never sent"
    assert (old_before, refused_key, new, old_after, new_again) == (101, 401, 101, 401, 101)
    assert [c["request"] for c in calls if c["action"] == "ChangeConfiguration"] == [
        {"key": "AuthorizationKey", "value": "********"}] * 2
    assert [c["request"]["value"] for c in relayed if c["action"] == "ChangeConfiguration"] == ["********"] * 2
    printed = capsys.readouterr()  # the edge's own log lines
    shown = json.dumps(calls) + json.dumps(relayed) + printed.out + printed.err + caplog.text
    assert "charger.auth_key_accepted" in shown
    for secret in (NEW_KEY, "a-key-it-refuses-00"):
        assert secret not in shown


async def test_rule_a_written_off_session_leaves_the_open_report_after_the_grace(edge: Edge) -> None:
    """Without a late stop, the cloud is told by the ``session.open`` report: the session leaves ``open``
    24 h after its write-off, and the cloud closes it with the energy it knows."""
    async with charger(edge.ocpp_port, "CP-1") as cp:
        started = await cp.call(call.StartTransaction(connector_id=1, id_tag="T", meter_start=0, timestamp=now_iso()),
                                suppress=False)
        running = await cp.call(call.StartTransaction(connector_id=2, id_tag="U", meter_start=0, timestamp=now_iso()),
                                suppress=False)
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Preparing",
                                              timestamp=later(1)), suppress=False)
    within = await edge.site.report_sessions()
    edge.site._clock = lambda: datetime.now(UTC) + timedelta(hours=25)
    after = await edge.site.report_sessions()
    assert {t.transaction_id for t in within.open} == {started.transaction_id, running.transaction_id}
    assert {t.transaction_id for t in after.open} == {running.transaction_id}
    assert after.last_transaction_id >= started.transaction_id, "so the cloud closes it rather than wait for it"
