"""A real Mosquitto started with the production configuration (``mqtt/mosquitto.conf``), for tests.

The configuration is rewritten only where a test must differ: its own port and temp paths, and
no TLS listener (unless ``certs`` is given). The password file and the ACL are the test's
(written with :mod:`evpark.broker_access`, as ``evpark sites add`` does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import free_port, in_ci, reachable

MQTT_DIR = Path(__file__).resolve().parents[2] / "mqtt"
PRODUCTION_CONF = MQTT_DIR / "mosquitto.conf"
REPO_ACL = MQTT_DIR / "acl.conf"
TLS_OPTIONS = ("cafile", "certfile", "keyfile", "tls_version", "require_certificate")


def need(binary: str, fallback: str) -> str:
    path = shutil.which(binary) or fallback
    if not Path(path).exists():
        message = f"{binary} is not installed (apt-get install mosquitto mosquitto-clients)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def broker_conf(folder: Path, port: int, *, password_file: Path, acl_file: Path, certs: Path | None = None) -> str:
    """The production mosquitto.conf with the test's port and paths; TLS kept only with ``certs``."""
    lines = []
    for line in PRODUCTION_CONF.read_text().splitlines():
        option = line.split(" ", 1)[0]
        if option == "listener":
            line = f"listener {port} 127.0.0.1"
        elif option in TLS_OPTIONS:
            if certs is None:
                continue
            if option in ("cafile", "certfile", "keyfile"):
                line = f"{option} {certs / Path(line.split(' ', 1)[1]).name}"
        elif option == "password_file":
            line = f"password_file {password_file}"
        elif option == "acl_file":
            line = f"acl_file {acl_file}"
        elif option == "persistence_location":
            line = f"persistence_location {folder}/"
        elif option == "log_dest":
            line = f"log_dest file {folder / 'mosquitto.log'}"
        lines.append(line)
    if os.geteuid() == 0:
        lines.append("user root")  # as root Mosquitto would switch to user mosquitto, locked out of tmp
    return "\n".join(lines) + "\n"


@dataclass
class Broker:
    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else "<no log>"

    def reload(self) -> None:
        """SIGHUP: Mosquitto reads its password file and ACL again."""
        self.process.send_signal(1)
        time.sleep(0.3)


@contextlib.contextmanager
def production_broker(folder: Path, *, password_file: Path, acl_file: Path,
                      certs: Path | None = None) -> Iterator[Broker]:
    mosquitto = need("mosquitto", "/usr/sbin/mosquitto")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(broker_conf(folder, port, password_file=password_file, acl_file=acl_file, certs=certs))
    process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    running = Broker(port, folder, process)
    try:
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", port, 0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"mosquitto did not start with the production config:\n{stderr}\n{running.log()}")
            time.sleep(0.05)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
