"""``cpsim load``: lean chargers measure what they send; small numbers here, the big ones in bench/."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from chargepoint_sim.cli import app
from chargepoint_sim.load import LoadOptions, LoadStats, run_load, split
from tests.unit.cpsim.central_system import CentralSystem, central_system_in_thread


def test_stats_percentiles_come_from_the_histogram_and_merge() -> None:
    a, b = LoadStats(), LoadStats()
    for ms in range(1, 101):
        (a if ms % 2 else b).record(ms / 1000)
    a.merge(b)
    assert a.answered == 100
    p50, p99 = a.percentile_ms(50), a.percentile_ms(99)
    assert p50 is not None and 50 <= p50 <= 50 * 1.07
    assert p99 is not None and 99 <= p99 <= 99 * 1.07
    assert LoadStats().percentile_ms(50) is None


def test_chargers_are_split_evenly_over_processes() -> None:
    assert split(10, 3) == [(1, 4), (5, 3), (8, 3)]
    assert split(2, 5) == [(1, 1), (2, 1)]


async def test_twenty_chargers_for_two_seconds_against_an_ocpp_library_central_system() -> None:
    async with CentralSystem() as central:
        stats = await run_load(LoadOptions(central.url, 20, meter_interval=0.2, duration_s=2.0))
        starts = central.of("StartTransaction")
        stops = central.of("StopTransaction")
        meters = central.of("MeterValues")

    assert stats.errors == 0, stats.last_error
    assert stats.connect_failures == 0 and stats.peak_connected == 20
    assert len(starts) == len(stops) == 20
    assert len(meters) >= 20 * 5
    assert stats.answered == stats.sent == len(central.received)
    assert {m["transaction_id"] for m in meters} <= {s["transaction_id"] for s in starts}
    assert stats.percentile_ms(99) is not None
    assert stats.cpu_s > 0


def test_cli_load_prints_a_json_summary_and_spreads_over_processes() -> None:
    with central_system_in_thread() as central:
        result = CliRunner().invoke(app, ["load", "--url", central.url, "--chargers", "6", "--meter-interval",
                                          "0.2", "--duration", "1.5", "--processes", "2", "--quiet"])
        starts = central.of("StartTransaction")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["chargers"] == 6 and summary["processes"] == 2
    assert summary["errors"] == 0 and summary["connect_failures"] == 0 and summary["peak_connected"] == 6
    assert summary["messages_answered"] >= 6 * 6
    assert summary["latency_ms"]["p50"] is not None
    assert summary["generator_cpu_us_per_message"] > 0
    assert len({s["id_tag"] for s in starts}) == 1 and len(starts) == 6


def test_cli_load_explains_when_no_charger_can_connect() -> None:
    from tests.support.services import free_port

    result = CliRunner().invoke(app, ["load", "--url", f"ws://127.0.0.1:{free_port()}/ocpp", "--chargers", "2",
                                      "--duration", "0.5", "--quiet"])
    assert result.exit_code == 1
    assert "no charger could connect" in result.stderr and "refused the connection" in result.stderr
