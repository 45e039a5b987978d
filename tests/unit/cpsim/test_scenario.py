"""Scenario files: the shipped examples parse, bad files name the line and the field, and a
scenario plays against the ocpp-library-only central system."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from chargepoint_sim.cli import app
from chargepoint_sim.scenario import (
    EXAMPLES,
    ScenarioError,
    load_scenario,
    parse_duration,
    parse_scenario,
    play_scenario,
)
from tests.unit.cpsim.central_system import CentralSystem

MINIMAL = """\
name: test
chargers:
  - id: CP-1
    connectors: 2
timeline:
  - at: 1s
    session: {charger: CP-1, connector: 2, id_tag: TAG-1, energy_wh: 300}
"""


@pytest.mark.parametrize("name", ["small-car-park.yaml", "evening-peak.yaml", "internet-outage.yaml"])
def test_every_shipped_example_parses(name: str) -> None:
    scenario = load_scenario(EXAMPLES / name)
    assert scenario.chargers and scenario.timeline


@pytest.mark.parametrize(("text", "seconds"), [(90, 90.0), ("90s", 90.0), ("15m", 900.0), ("1h30m", 5400.0),
                                               ("01:30:00", 5400.0), ("0:00:05.5", 5.5)])
def test_times_accept_seconds_durations_and_clock_times(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "park.yaml")
    return str(caught.value)


def test_wrong_type_names_the_line_and_the_field() -> None:
    message = _error(MINIMAL.replace("energy_wh: 300", "energy_wh: lots"))
    assert message.startswith("park.yaml line 7: timeline[0].session.energy_wh:")
    assert "integer" in message


def test_missing_field_names_the_field_and_the_line_of_its_parent() -> None:
    message = _error(MINIMAL.replace(", energy_wh: 300", ""))
    assert message.startswith("park.yaml line 7: timeline[0].session.energy_wh: Field required")


def test_unknown_field_is_refused_with_its_line() -> None:
    message = _error(MINIMAL.replace("    connectors: 2\n", "    connectors: 2\n    conectors: 3\n"))
    assert message.startswith("park.yaml line 5: chargers[0].conectors:")


def test_bad_time_names_the_line() -> None:
    message = _error(MINIMAL.replace("at: 1s", "at: soon"))
    assert message.startswith("park.yaml line 6: timeline[0].at:")
    assert "'soon' is not a time" in message


def test_reference_to_an_unknown_charger_or_connector_names_the_line() -> None:
    assert _error(MINIMAL.replace("charger: CP-1", "charger: CP-9")).startswith(
        "park.yaml line 7: timeline[0].session.charger: no charger 'CP-9'")
    assert _error(MINIMAL.replace("connector: 2", "connector: 3")).startswith(
        "park.yaml line 7: timeline[0].session.connector: charger CP-1 has connectors 1..2")


def test_entry_with_two_events_is_refused() -> None:
    message = _error(MINIMAL + "  - {at: 2s, arrive: B-1, depart: B-1}\n")
    assert message.startswith("park.yaml line 8: timeline[1]: each timeline entry needs")


def test_broken_yaml_names_the_line() -> None:
    message = _error(MINIMAL.replace("    connectors: 2", "    connectors: [2"))
    assert message.startswith("park.yaml line ")
    assert "not valid YAML" in message


def test_cli_check_reports_a_bad_file_in_one_line_per_problem(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "bad.yaml"
    path.write_text(MINIMAL.replace("energy_wh: 300", "energy_wh: -5"))
    result = CliRunner().invoke(app, ["run", "--check", str(path)])
    assert result.exit_code == 1
    assert f"{path} line 7: timeline[0].session.energy_wh:" in result.stderr


def test_cli_check_summarises_a_good_file() -> None:
    result = CliRunner().invoke(app, ["run", "--check", str(EXAMPLES / "small-car-park.yaml")])
    assert result.exit_code == 0, result.output
    assert "2 chargers, 3 sensors" in result.stdout


async def test_scenario_plays_sessions_stops_and_faults_against_an_ocpp_library_central_system() -> None:
    text = MINIMAL + """\
  - {at: 1s, session: {charger: CP-1, connector: 1, id_tag: TAG-2, energy_wh: 5000}}
  - {at: 60s, fault: {charger: CP-1, kind: offline, duration: 60s}}
  - {at: 200s, stop: {charger: CP-1, connector: 1, reason: EVDisconnected}}
meter_interval: 10
"""
    scenario = parse_scenario(text)
    async with CentralSystem() as central:
        report = await play_scenario(scenario, url=central.url, time_compression=200)

    assert report.errors == []
    by_connector = {r.connector_id: r for _, r in report.sessions}
    assert by_connector[2].energy_wh == 300
    assert by_connector[1].stop_reason == "EVDisconnected" and 0 < by_connector[1].energy_wh < 5000
    stops = central.of("StopTransaction")
    starts = central.of("StartTransaction")
    assert sorted(s["transaction_id"] for s in stops) == sorted(s["transaction_id"] for s in starts)
