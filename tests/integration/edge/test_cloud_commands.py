"""Cloud commands to chargers over the real Mosquitto: sent to an ``ocpp``-library charger through the same
path as the admin API, answered with a command.result carrying the charger's answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import pytest

from edge import Edge, EdgeSettings
from edge.uplink import uplink_client_id
from mqtt.envelope import Command, CommandResult
from mqtt.payloads import (
    AcceptCharger,
    CancelReservation,
    ChangeAvailability,
    ClearChargingProfile,
    RemoteStart,
    RemoteStop,
    Reserve,
    Reset,
    SetChargingProfile,
    UnlockConnector,
    _Body,
)
from mqtt.topics import QOS, Topics
from tests.integration.edge.charger import CHARGER_ANSWERS, answering_charger
from tests.integration.edge.test_ocpp_profiles import PROFILE
from tests.integration.edge.test_uplink import Subscriber, subscribed

pytestmark = pytest.mark.integration

EXPIRY = datetime(2030, 1, 1, tzinfo=UTC)

COMMANDS: list[tuple[_Body, str, dict[str, Any]]] = [
    (RemoteStart(charger_id="CP-1", id_tag="TAG-OK", connector_id=1), "RemoteStartTransaction",
     {"id_tag": "TAG-OK", "connector_id": 1}),
    (RemoteStop(charger_id="CP-1", transaction_id=17), "RemoteStopTransaction", {"transaction_id": 17}),
    (Reserve(charger_id="CP-1", reservation_id=5, connector_id=1, id_tag="TAG-OK", expiry_date=EXPIRY),
     "ReserveNow", {"reservation_id": 5, "connector_id": 1, "id_tag": "TAG-OK",
                    "expiry_date": "2030-01-01T00:00:00.000Z"}),
    (CancelReservation(charger_id="CP-1", reservation_id=5), "CancelReservation", {"reservation_id": 5}),
    (ChangeAvailability(charger_id="CP-1", connector_id=0, type="Inoperative"), "ChangeAvailability",
     {"connector_id": 0, "type": "Inoperative"}),
    (Reset(charger_id="CP-1", type="Hard"), "Reset", {"type": "Hard"}),
    (UnlockConnector(charger_id="CP-1", connector_id=2), "UnlockConnector", {"connector_id": 2}),
    (SetChargingProfile(charger_id="CP-1", connector_id=1, charging_profile=PROFILE), "SetChargingProfile",
     {"connector_id": 1}),
    (ClearChargingProfile(charger_id="CP-1", purpose="TxDefaultProfile"), "ClearChargingProfile",
     {"charging_profile_purpose": "TxDefaultProfile"}),
]


@pytest.fixture
async def online(make_settings: Any, mosquitto: tuple[str, int], topic_root: str) -> AsyncIterator[EdgeSettings]:
    settings = make_settings(mqtt_host=mosquitto[0], mqtt_port=mosquitto[1], mqtt_topic_root=topic_root)
    yield settings
    async with aiomqtt.Client("127.0.0.1", settings.mqtt_port,
                              identifier=uplink_client_id(settings.site_id, settings.mqtt_topic_root),
                              clean_session=True):
        pass


async def send(settings: EdgeSettings, *commands: Command) -> None:
    topics = Topics(settings.mqtt_topic_root)
    async with aiomqtt.Client("127.0.0.1", settings.mqtt_port) as cloud:
        for command in commands:
            await cloud.publish(topics.down(settings.site_id), command.to_bytes(), qos=QOS)


def results(subscriber: Subscriber) -> dict[str, CommandResult]:
    """The first result of each command (a redelivered command is answered again)."""
    first: dict[str, CommandResult] = {}
    for envelope in subscriber.unique():
        result = CommandResult.model_validate(envelope.body)
        first.setdefault(str(result.command_id), result)
    return first


async def test_every_cloud_charger_command_is_sent_to_the_charger_and_answered(online: EdgeSettings) -> None:
    topics = Topics(online.mqtt_topic_root)
    commands = [Command.new(online.site_id, body) for body, _, _ in COMMANDS]
    async with subscribed(online.mqtt_port, topics.up(online.site_id, "result")) as subscriber, \
            Edge(online) as edge, answering_charger(edge.ocpp_port, "CP-1") as cp:
        async with asyncio.timeout(20):
            await edge.uplink.connected.wait()
        await send(online, *commands)
        await subscriber.wait_for(lambda envelopes: len(envelopes) >= len(commands))
        async with edge.store.transaction() as tx:
            calls = await tx.charger_calls("CP-1")
            reservations = await tx.reservations("CP-1")

    answered = results(subscriber)
    for command, (_, action, _fields) in zip(commands, COMMANDS, strict=True):
        result = answered[str(command.id)]
        assert result.status == "accepted", (action, result)
        assert result.data["action"] == action
        assert result.data["response"]["kind"] == "result"
    assert [action for action, _ in cp.received] == [action for _, action, _ in COMMANDS]
    for (action, received), (_, _, fields) in zip(cp.received, COMMANDS, strict=True):
        assert received.items() >= fields.items(), action
    assert {c["origin"] for c in calls} == {"cloud"}
    assert [(r["id"], r["state"]) for r in reservations] == [(5, "cancelled")]


async def test_a_rejecting_a_missing_or_a_pending_charger_gives_rejected_or_failed_results(
        make_settings: Any, mosquitto: tuple[str, int], topic_root: str) -> None:
    settings = make_settings(mqtt_host=mosquitto[0], mqtt_port=mosquitto[1], mqtt_topic_root=topic_root,
                             unknown_chargers_pending=True)
    topics = Topics(settings.mqtt_topic_root)
    offline = Command.new(settings.site_id, Reset(charger_id="CP-GONE", type="Soft"))
    pending = Command.new(settings.site_id, RemoteStart(charger_id="CP-1", id_tag="T"))
    accept = Command.new(settings.site_id, AcceptCharger(charger_id="CP-1"))
    refused = Command.new(settings.site_id, UnlockConnector(charger_id="CP-1", connector_id=1))
    expired = Command.new(settings.site_id, Reset(charger_id="CP-1", type="Soft"), ttl=timedelta(seconds=1),
                          now=datetime.now(UTC) - timedelta(minutes=1))
    try:
        async with subscribed(settings.mqtt_port, topics.up(settings.site_id, "result")) as subscriber, \
                Edge(settings) as edge, answering_charger(edge.ocpp_port, "CP-1", boot=False) as cp:
            async with asyncio.timeout(20):
                await edge.uplink.connected.wait()
            from tests.integration.edge.charger import boot_notification
            assert (await boot_notification(cp)).status == "Pending"
            cp.answers["UnlockConnector"] = type(CHARGER_ANSWERS["UnlockConnector"])(status="UnlockFailed")
            await send(settings, offline, pending, accept, refused, expired, accept)
            await subscriber.wait_for(lambda envelopes: len(envelopes) >= 6)
            repeated = [CommandResult.model_validate(e.body) for e in subscriber.unique()][-1]
            assert repeated.command_id == accept.id and "already handled" in str(repeated.detail)
            record = await edge.store.get_charger("CP-1")
    finally:
        async with aiomqtt.Client("127.0.0.1", settings.mqtt_port,
                                  identifier=uplink_client_id(settings.site_id, settings.mqtt_topic_root),
                                  clean_session=True):
            pass

    answered = results(subscriber)
    assert answered[str(offline.id)].status == "failed" and "not connected" in str(answered[str(offline.id)].detail)
    assert answered[str(pending.id)].status == "rejected" and "Pending" in str(answered[str(pending.id)].detail)
    assert answered[str(accept.id)].status == "accepted" and answered[str(accept.id)].data == {
        "boot_triggered": True}
    assert answered[str(refused.id)].status == "rejected"
    assert answered[str(refused.id)].data["response"]["payload"] == {"status": "UnlockFailed"}
    assert answered[str(expired.id)].status == "expired"
    # The second copy of `accept` is answered from the record, not sent again.
    assert [a for a, _ in cp.received] == ["TriggerMessage", "UnlockConnector"]
    assert record is not None and record.accepted
