"""Real services for integration tests: find them, and give each test fresh names.

A service that is not reachable skips the test on a developer's machine but fails it loudly
under ``CI=true``: CI must never pass by skipping what it claims to prove.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
RABBITMQ = ("127.0.0.1", 5672)
MOSQUITTO = ("127.0.0.1", 1883)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(name: str, address: tuple[str, int]) -> None:
    if reachable(*address):
        return
    message = f"{name} is not reachable on {address[0]}:{address[1]}; `make services` starts it"
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


_LISTEN_PORTS = range(20_000, 32_000)
"""Below Linux's ephemeral range (32768-60999): a port the OS hands to a test's listener by
``bind(0)`` may be taken meanwhile by any outgoing connection (to PostgreSQL, RabbitMQ, …) before
the process under test binds it; ports in this range are never used for those."""
_handed_out: set[int] = set()


def free_port() -> int:
    """A port free to listen on now, below the ephemeral range, never given twice in this process."""
    for _ in range(200):
        port = random.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port in 20000-31999")


def fresh_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def create_rabbitmq_vhost() -> str:
    """A fresh vhost for one test, with full rights for guest. Needs rabbitmqctl (root)."""
    vhost = fresh_name("evpark-test-")
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.fail("rabbitmqctl not found; cannot create a fresh RabbitMQ vhost")
    subprocess.run([ctl, "-q", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
    subprocess.run([ctl, "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
                   check=True, capture_output=True, timeout=60)
    return vhost


def delete_rabbitmq_vhost(vhost: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        subprocess.run([ctl, "-q", "delete_vhost", vhost], capture_output=True, timeout=60)


@dataclass
class PrivateMosquitto:
    """A Mosquitto of a test's own, on a free port, that the test may stop and start.

    It keeps persistent sessions across a restart (persistence on, in a temp folder), like a
    production broker; with ``persistence=False`` a restart (or :meth:`kill`) loses every queued
    message it acknowledged, its sessions and its retained messages: a broker crash at its worst.
    """

    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None
    persistence: bool = True

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.fail("mosquitto is not installed; `make services` installs it")
        conf = self.folder / "mosquitto.conf"
        # As root, Mosquitto drops to the 'mosquitto' user, which cannot write the temp folder.
        run_as = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"{run_as}listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {'true' if self.persistence else 'false'}\n"
            f"persistence_location {self.folder}/\nautosave_interval 1\n"
            "max_queued_messages 1000000\n"  # as mqtt/mosquitto.conf: a backlog is never dropped
        )
        self.process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not reachable("127.0.0.1", self.port, 0.2):
            if time.monotonic() > deadline:
                raise RuntimeError("private mosquitto did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9``: no goodbye, nothing saved that was not saved already."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.process = None


@contextlib.contextmanager
def private_mosquitto(*, persistence: bool = True) -> Iterator[PrivateMosquitto]:
    with tempfile.TemporaryDirectory(prefix="evpark-mosq-") as folder:
        broker = PrivateMosquitto(port=free_port(), folder=Path(folder), persistence=persistence)
        broker.start()
        try:
            yield broker
        finally:
            broker.stop()
