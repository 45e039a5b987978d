"""OCPP-J framing rules of the central system, over a duck-typed in-memory transport."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.ocpp import FAST_ACTIONS, ChargerConnection, charger_id_from_path, ocpp_time
from edge.site import Site
from edge.store import Store
from edge.validation import compile_schemas


class Transport:
    """What ocpp's ChargePoint needs from a connection: ``send`` and ``recv``."""

    def __init__(self) -> None:
        self.sent: list[list[Any]] = []

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))

    async def recv(self) -> str:  # pragma: no cover - the tests route frames directly
        raise AssertionError("not used")


@pytest.fixture
async def connection(tmp_path: Path) -> AsyncIterator[tuple[ChargerConnection, Transport]]:
    async with await Store.open(tmp_path / "edge.db") as store:
        site = Site(store, site_id="s", heartbeat_interval=60, accept_unknown_chargers=True)
        transport = Transport()
        charger = ChargerConnection("CP-1", transport, site, compile_schemas(FAST_ACTIONS))  # type: ignore[arg-type]
        yield charger, transport


@pytest.mark.parametrize(("path", "charger_id"), [
    ("/ocpp/CP-1", "CP-1"),
    ("/ocpp/CP%201%2FA", "CP 1/A"),
    ("/ocpp/CP-1?x=1", "CP-1"),
    ("/ocpp/", None),
    ("/ocpp/a/b", None),
    ("/other/CP-1", None),
    ("/ocpp/" + "x" * 65, None),
])
def test_the_charger_id_is_the_percent_decoded_last_path_level(path: str, charger_id: str | None) -> None:
    assert charger_id_from_path(path) == charger_id


def test_ocpp_times_are_utc_with_milliseconds_and_z() -> None:
    assert ocpp_time(datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)) == "2025-06-01T12:00:00.123Z"


async def test_schema_errors_go_out_with_the_1_6_spelling(connection: tuple[ChargerConnection, Transport]) -> None:
    cp, transport = connection
    await cp.route_message('[2,"1","BootNotification",{"chargePointVendor":"A","chargePointModel":"B","x":1}]')
    assert transport.sent[-1][:3] == [4, "1", "FormationViolation"]
    assert isinstance(transport.sent[-1][4], dict)


@pytest.mark.parametrize("frame", [
    '[2,"1","Heartbeat"]',
    '[2,"1",7,{}]',
    '[2,"1","Heartbeat",[]]',
    '[2,"1","Heartbeat",{',
])
async def test_a_malformed_call_with_a_readable_id_gets_formation_violation(
        connection: tuple[ChargerConnection, Transport], frame: str) -> None:
    cp, transport = connection
    await cp.route_message(frame)
    assert transport.sent == [[4, "1", "FormationViolation", transport.sent[0][3], {}]]


@pytest.mark.parametrize("frame", ["{}", "[]", '"text"', "[9,1]", "[3]", "not json at all", '[true,"1"]'])
async def test_frames_without_a_call_id_are_dropped_quietly(connection: tuple[ChargerConnection, Transport],
                                                            frame: str) -> None:
    cp, transport = connection
    await cp.route_message(frame)
    assert transport.sent == []


async def test_boot_then_heartbeat_are_answered(connection: tuple[ChargerConnection, Transport]) -> None:
    cp, transport = connection
    await cp.route_message('[2,"1","Heartbeat",{}]')
    await cp.route_message('[2,"2","BootNotification",{"chargePointVendor":"A","chargePointModel":"B"}]')
    await cp.route_message('[2,"3","Heartbeat",{}]')
    assert [frame[:3] for frame in transport.sent] == [[4, "1", "SecurityError"], [3, "2", transport.sent[1][2]],
                                                       [3, "3", transport.sent[2][2]]]
    assert transport.sent[1][2]["status"] == "Accepted" and transport.sent[1][2]["interval"] == 60


async def test_a_failure_inside_the_central_system_is_still_answered_with_internal_error(
        connection: tuple[ChargerConnection, Transport], monkeypatch: pytest.MonkeyPatch) -> None:
    cp, transport = connection
    await cp.route_message('[2,"1","BootNotification",{"chargePointVendor":"A","chargePointModel":"B"}]')

    async def broken(charger_id: str) -> datetime:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cp._site, "heartbeat", broken)
    await cp.route_message('[2,"2","Heartbeat",{}]')
    assert transport.sent[-1][:3] == [4, "2", "InternalError"] and transport.sent[-1][4] == {}


async def test_integers_no_column_can_hold_get_property_constraint_violation(
        connection: tuple[ChargerConnection, Transport]) -> None:
    cp, transport = connection
    await cp.route_message('[2,"1","BootNotification",{"chargePointVendor":"A","chargePointModel":"B"}]')
    frame = ('[2,"2","StartTransaction",{"connectorId":1,"idTag":"T","meterStart":' + "9" * 30
             + ',"timestamp":"2025-06-01T12:00:00Z"}]')
    await cp.route_message(frame)
    assert transport.sent[-1][:3] == [4, "2", "PropertyConstraintViolation"]


async def test_an_answer_nobody_waits_for_is_dropped_not_queued(
        connection: tuple[ChargerConnection, Transport]) -> None:
    cp, transport = connection
    await cp.route_message('[3,"nobody-asked",{"status":"Accepted"}]')
    await cp.route_message('[4,"nobody-asked","GenericError","",{}]')
    assert cp._response_queue.empty()
    assert transport.sent == []
