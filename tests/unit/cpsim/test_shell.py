"""``cpsim shell``: commands typed on stdin reach the central system; bad commands do not end it."""

from __future__ import annotations

from typer.testing import CliRunner

from chargepoint_sim.cli import app
from tests.unit.cpsim.central_system import central_system_in_thread

SCRIPT = """\
help
boot
authorize TAG-1
status 1 Preparing
start 1 TAG-1 1000
meter 1 1500
meter one 1500
stop 1
status 1 Faulted GroundFailure
raw [2,"raw-1","Heartbeat",{}]
fault 1970 on
status 1 Available
fault repeat Authorize
authorize TAG-2
fault 1970 off
fault repeat off
fault bogus on
offline
start 1 TAG-3 1500
stop 1
online
drop
frobnicate
quit
heartbeat
"""


def test_shell_sends_what_is_typed_and_prints_the_answers() -> None:
    with central_system_in_thread() as central:
        result = CliRunner().invoke(app, ["shell", "--url", central.url, "--charger-id", "CP-SHELL"], input=SCRIPT)
        received = [(r.action, r.payload) for r in central.received]

    assert result.exit_code == 0, result.output
    actions = [action for action, _ in received]
    assert actions.count("BootNotification") == 2  # on connect, and the typed one
    start = next(p for a, p in received if a == "StartTransaction")
    stop = next(p for a, p in received if a == "StopTransaction")
    meter = next(p for a, p in received if a == "MeterValues")
    assert start["meter_start"] == 1000 and stop["meter_stop"] == 1500
    assert stop["transaction_id"] == start["transaction_id"] == meter["transaction_id"]
    faulted = [p for a, p in received if a == "StatusNotification" and p["status"] == "Faulted"]
    assert faulted[0]["error_code"] == "GroundFailure"
    assert actions.count("Heartbeat") == 1, "the raw Heartbeat went out; nothing after quit"
    assert [p["id_tag"] for a, p in received if a == "Authorize"] == ["TAG-1", "TAG-2", "TAG-2"]
    assert next(p for a, p in received if a == "StatusNotification" and p["status"] == "Faulted")
    offline_start = [p for a, p in received if a == "StartTransaction"][1]
    offline_stop = [p for a, p in received if a == "StopTransaction"][1]
    assert offline_start["id_tag"] == "TAG-3", "queued offline, replayed on online"
    assert offline_stop["transaction_id"] == offline_start["transaction_id"]
    assert "online: 2 queued message(s) replayed" in result.stdout
    stamps = [p["timestamp"][:4] for a, p in received if a == "StatusNotification" and p["connector_id"] == 1]
    assert "1970" in stamps and stamps[-1] != "1970"
    assert "usage: fault 1970|kwh on|off" in result.stdout
    out = result.stdout
    assert "StartTransaction: {" in out and "Accepted" in out
    assert '[3,"raw-1",{"currentTime"' in out
    assert "usage: meter CONNECTOR WH" in out
    assert "unknown command 'frobnicate'" in out
    assert "authorize TAG" in out  # help


def test_shell_explains_a_refused_connection_in_one_sentence() -> None:
    from tests.support.services import free_port

    result = CliRunner().invoke(app, ["shell", "--url", f"ws://127.0.0.1:{free_port()}/ocpp",
                                      "--charger-id", "CP-1"], input="quit\n")
    assert result.exit_code == 1
    assert "refused the connection: is the edge running and is the port right?" in result.stderr
