"""`evpark up` as a user runs it: clear refusal on a taken port, clean stop on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from cloud.registry import SERVICES
from tests.e2e.conftest import embedded
from tests.e2e.harness import EVPARK
from tests.support.services import free_port

pytestmark = pytest.mark.e2e


def test_a_taken_port_is_named_with_the_option_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        others = [arg for name in (*SERVICES, "ocpp", "admin", "mqtt") if name != "gateway"
                  for arg in (f"--{name}-port", str(free_port()))]
        result = subprocess.run([EVPARK, "up", "--data-dir", str(tmp_path), "--gateway-port", str(port), *others],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"port {port}" in result.stderr and "--gateway-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_stops_everything_cleanly(tmp_path: Path) -> None:
    system = embedded(tmp_path)
    try:
        system.wait_healthy(120)
        [process] = system.processes
        process.popen.send_signal(signal.SIGTERM)
        assert process.popen.wait(20) == 0, process.tail()
    finally:
        system.stop()
