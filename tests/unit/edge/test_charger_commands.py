"""The cloud's charger commands at the edge: sent to the charger and answered with the charger's answer;
an expired one is answered ``expired`` and never reaches the charger; the charger is waited for only until
the command expires (the cloud has stopped waiting by then)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from edge.site import CallAnswer, Site
from edge.store import Store
from mqtt.envelope import Command, CommandResult
from mqtt.payloads import CommandStatus, RemoteStart, Reset, UnlockConnector

SITE = "garage-1"


class Chargers:
    """Connected chargers that answer ``answers[action]`` (status), or never (``silent``)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], float]] = []
        self.answers = {"RemoteStartTransaction": "Accepted", "UnlockConnector": "Unlocked", "Reset": "Rejected"}
        self.silent = False

    async def call(self, charger_id: str, action: str, payload: dict[str, Any], answer_within: float) -> CallAnswer:
        self.calls.append((action, payload, answer_within))
        if self.silent:
            await asyncio.sleep(answer_within)
            raise TimeoutError
        return CallAnswer("result", {"status": self.answers[action]})

    def is_connected(self, charger_id: str) -> bool:
        return True


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Site, Chargers]]:
    async with await Store.open(tmp_path / "edge.db") as store:
        the_site = Site(store, site_id=SITE, heartbeat_interval=60, accept_unknown_chargers=True)
        chargers = Chargers()
        the_site.chargers = chargers
        yield the_site, chargers


async def results(site: Site) -> list[CommandResult]:
    return [CommandResult.model_validate(row.body) for row in await site.store.outbox_batch(1000)
            if row.type == "command.result"]


async def test_charger_commands_reach_the_charger_and_come_back_with_its_answer(
        site: tuple[Site, Chargers]) -> None:
    edge, chargers = site
    for body in (RemoteStart(charger_id="CP-1", id_tag="TAG1", connector_id=2),
                 UnlockConnector(charger_id="CP-1", connector_id=1), Reset(charger_id="CP-1", type="Soft")):
        await edge.handle_command(Command.new(SITE, body, ttl=timedelta(seconds=17)))
    assert [(a, p) for a, p, _ in chargers.calls] == [
        ("RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 2}), ("UnlockConnector", {"connectorId": 1}),
        ("Reset", {"type": "Soft"})]
    assert [(r.status, r.data["response"]["payload"]["status"]) for r in await results(edge)] == [
        (CommandStatus.ACCEPTED, "Accepted"), (CommandStatus.ACCEPTED, "Unlocked"),
        (CommandStatus.REJECTED, "Rejected")]


async def test_an_expired_remote_start_is_answered_expired_and_never_sent(site: tuple[Site, Chargers]) -> None:
    edge, chargers = site
    late = Command.new(SITE, RemoteStart(charger_id="CP-1", id_tag="TAG1"), ttl=timedelta(seconds=17),
                       now=datetime.now(UTC) - timedelta(seconds=18))
    assert await edge.handle_command(late) == CommandStatus.EXPIRED
    assert chargers.calls == []
    [result] = await results(edge)
    assert (result.command_id, result.status) == (late.id, CommandStatus.EXPIRED)


async def test_a_silent_charger_is_waited_for_only_until_the_command_expires(site: tuple[Site, Chargers]) -> None:
    edge, chargers = site
    chargers.silent = True
    command = Command.new(SITE, RemoteStart(charger_id="CP-1", id_tag="TAG1"), ttl=timedelta(seconds=0.5))
    assert await edge.handle_command(command) == CommandStatus.FAILED
    [(_, _, waited)] = chargers.calls
    assert waited <= 0.5
    [result] = await results(edge)
    assert result.status == CommandStatus.FAILED and "did not answer" in (result.detail or "")


def test_every_command_type_the_cloud_sends_has_one_route_and_charger_commands_go_to_the_charger() -> None:
    from edge.commands import ROUTES
    from mqtt.payloads import CHARGER_COMMANDS, COMMAND_BODIES

    assert set(ROUTES) == set(COMMAND_BODIES.values())  # no command type is answered "not supported"
    for model, route in ROUTES.items():
        assert (route.run is not None) == (model in CHARGER_COMMANDS), model
        assert (route.apply is None) == (route.run is not None), model


async def test_a_redelivered_charger_command_is_answered_again_without_a_second_call(
        site: tuple[Site, Chargers]) -> None:
    edge, chargers = site
    command = Command.new(SITE, UnlockConnector(charger_id="CP-1", connector_id=1))
    assert await edge.handle_command(command) == CommandStatus.ACCEPTED
    assert await edge.handle_command(command) == CommandStatus.ACCEPTED
    assert [a for a, _, _ in chargers.calls] == ["UnlockConnector"]
    first, again = await results(edge)
    assert first.command_id == again.command_id == command.id
    assert again.detail == "already handled; not sent to the charger again"


async def test_a_charger_command_for_another_site_is_rejected_and_never_sent(site: tuple[Site, Chargers]) -> None:
    edge, chargers = site
    command = Command.new("garage-2", Reset(charger_id="CP-1", type="Hard"))
    assert await edge.handle_command(command) == CommandStatus.REJECTED
    assert chargers.calls == []
    [result] = await results(edge)
    assert "garage-2" in (result.detail or "")
