"""``cpsim`` on the command line: a session against a test central system, and clear failures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from chargepoint_sim.cli import app
from tests.support.services import free_port
from tests.unit.cpsim.central_system import central_system_in_thread

FAST = ["--meter-interval", "0.001", "--speedup", "20000"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_session_prints_a_json_summary_with_the_energy(runner: CliRunner) -> None:
    with central_system_in_thread() as central:
        result = runner.invoke(app, ["session", "--url", central.url, "--charger-id", "CP-1",
                                     "--id-tag", "TAG-1", "--energy-wh", "7500", *FAST, "--json"])
        stops = central.of("StopTransaction")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["energy_wh"] == 7500
    assert summary["meter_stop_wh"] - summary["meter_start_wh"] == 7500
    assert summary["transaction_id"] == stops[0]["transaction_id"]
    assert (summary["charger_id"], summary["id_tag_status"], summary["stop_reason"]) == ("CP-1", "Accepted",
                                                                                         "Local")


def test_session_without_json_prints_a_readable_summary(runner: CliRunner) -> None:
    with central_system_in_thread() as central:
        result = runner.invoke(app, ["session", "--url", central.url, "--charger-id", "CP-1",
                                     "--id-tag", "TAG-1", "--energy-wh", "1500", "--connector", "1", *FAST])

    assert result.exit_code == 0, result.output
    assert "energy (Wh)" in result.stdout and "1,500" in result.stdout


def test_closed_port_is_explained_in_one_sentence(runner: CliRunner) -> None:
    url = f"ws://127.0.0.1:{free_port()}/ocpp"
    result = runner.invoke(app, ["session", "--url", url, "--charger-id", "CP-1", "--id-tag", "TAG",
                                 "--energy-wh", "100"])

    assert result.exit_code == 1
    assert result.stderr.strip() == (f"cpsim: the central system at {url} refused the connection: "
                                     "is the edge running and is the port right?")
    assert result.stdout == ""


def test_unknown_charger_and_refused_tag_are_explained(runner: CliRunner) -> None:
    with central_system_in_thread(known={"CP-1"}, refused_tags={"BAD": "Invalid"}) as central:
        unknown = runner.invoke(app, ["session", "--url", central.url, "--charger-id", "CP-404",
                                      "--id-tag", "TAG", "--energy-wh", "100"])
        refused = runner.invoke(app, ["session", "--url", central.url, "--charger-id", "CP-1",
                                      "--id-tag", "BAD", "--energy-wh", "100", "--json"])

    assert unknown.exit_code == 1
    assert "does not know charger 'CP-404' (HTTP 404)" in unknown.stderr
    assert refused.exit_code == 1
    assert "refused id tag 'BAD' (Invalid in Authorize)" in refused.stderr
    assert refused.stdout == ""


def test_missing_password_is_explained(runner: CliRunner) -> None:
    with central_system_in_thread(passwords={"CP-1": "0123456789abcdef"}) as central:
        result = runner.invoke(app, ["session", "--url", central.url, "--charger-id", "CP-1",
                                     "--id-tag", "TAG", "--energy-wh", "100"])

    assert result.exit_code == 1
    assert "requires a password" in result.stderr and "--password" in result.stderr


@pytest.mark.parametrize("command", [[], ["session"], ["demo"], ["run"], ["shell"], ["load"]])
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def test_installed_entry_point_fails_cleanly_without_a_traceback() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ocpp"
    done = subprocess.run(
        [sys.executable, "-m", "chargepoint_sim", "session", "--url", url, "--charger-id", "CP-1",
         "--id-tag", "TAG", "--energy-wh", "100"],
        capture_output=True, text=True, timeout=30)

    assert done.returncode == 1
    assert "refused the connection: is the edge running and is the port right?" in done.stderr
    assert "Traceback" not in done.stderr
