"""mqtt/mosquitto.conf + mqtt/acl.conf on a real Mosquitto: each site sees only its own topics.

The broker runs on a free port with the production configuration, rewritten only where a test
must differ: its own port and temp paths, and no TLS listener (one test keeps TLS, with a
throw-away certificate, when openssl is installed).
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from mqtt.topics import Topics
from tests.support.services import free_port, in_ci, reachable

MQTT_DIR = Path(__file__).resolve().parents[3] / "mqtt"
PRODUCTION_CONF = MQTT_DIR / "mosquitto.conf"
ACL = MQTT_DIR / "acl.conf"
PASSWORDS = {"site-a": "password-of-site-a", "site-b": "password-of-site-b",
             "evpark-cloud": "password-of-the-cloud"}
TLS_OPTIONS = ("cafile", "certfile", "keyfile", "tls_version", "require_certificate")
TOPICS = Topics()  # the ACL names the production root, evpark


def _need(binary: str, fallback: str) -> str:
    path = shutil.which(binary) or fallback
    if not Path(path).exists():
        message = f"{binary} is not installed (apt-get install mosquitto mosquitto-clients)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def broker_conf(folder: Path, port: int, *, certs: Path | None = None) -> str:
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
            line = f"password_file {folder / 'passwd'}"
        elif option == "acl_file":
            line = f"acl_file {folder / 'acl.conf'}"
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


@contextlib.contextmanager
def broker(tmp_path: Path, *, certs: Path | None = None) -> Iterator[Broker]:
    mosquitto = _need("mosquitto", "/usr/sbin/mosquitto")
    mosquitto_passwd = _need("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    passwd = tmp_path / "passwd"
    for index, (user, password) in enumerate(PASSWORDS.items()):
        create = ["-c"] if index == 0 else []
        subprocess.run([mosquitto_passwd, *create, "-b", str(passwd), user, password], check=True,
                       capture_output=True, timeout=30)
    passwd.chmod(0o600)
    shutil.copy(ACL, tmp_path / "acl.conf")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(broker_conf(tmp_path, port, certs=certs))
    process = subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    running = Broker(port, tmp_path, process)
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


@dataclass
class Client:
    """A paho MQTT 3.1.1 client that records what it receives."""

    name: str
    client: paho.Client
    received: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)

    def subscribe(self, topic: str) -> list[int]:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=15)

    def publish(self, topic: str, payload: str) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(15)

    def next_message(self, timeout: float = 15) -> tuple[str, bytes]:
        return self.received.get(timeout=timeout)

    def messages_until(self, marker: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including ``marker`` (delivery keeps publish order)."""
        seen = []
        while True:
            message = self.next_message()
            seen.append(message)
            if message[1] == marker:
                return seen


@contextlib.contextmanager
def client(port: int, username: str | None, *, password: str | None = None,
           ca_file: Path | None = None) -> Iterator[Client]:
    inner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{username}-{uuid.uuid4().hex[:8]}",
                        protocol=paho.MQTTv311)
    if username is not None:
        inner.username_pw_set(username, PASSWORDS.get(username) if password is None else password)
    if ca_file is not None:
        inner.tls_set(ca_certs=str(ca_file))
    wrapper = Client(username or "anonymous", inner)
    connected = threading.Event()
    outcome: dict[str, object] = {}

    def on_connect(_c: paho.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        outcome["reason"] = reason
        connected.set()

    inner.on_connect = on_connect
    inner.on_message = lambda _c, _u, message: wrapper.received.put((message.topic, bytes(message.payload)))
    inner.on_subscribe = lambda _c, _u, _mid, codes, _p: wrapper.subacks.put([int(c.value) for c in codes])
    inner.connect("127.0.0.1", port, keepalive=30)
    inner.loop_start()
    try:
        if not connected.wait(5):
            pytest.fail(f"{username} got no CONNACK")
        reason = outcome["reason"]
        if getattr(reason, "is_failure", False):
            raise ConnectionRefusedError(str(reason))
        yield wrapper
    finally:
        inner.disconnect()
        inner.loop_stop()


def test_each_site_uses_its_own_topics_and_cannot_touch_another_site(tmp_path: Path) -> None:
    with broker(tmp_path) as running, client(running.port, "evpark-cloud") as cloud, \
            client(running.port, "site-a") as site_a, client(running.port, "site-b") as site_b:
        cloud.subscribe("evpark/sites/+/up/#")
        site_a.subscribe(TOPICS.down("site-a"))
        site_b.subscribe(TOPICS.down("site-b"))

        # A site publishes into its own up/ and the cloud gets it.
        site_a.publish(TOPICS.up("site-a", "session"), "a-own")
        assert cloud.next_message() == (TOPICS.up("site-a", "session"), b"a-own")

        # Site A cannot publish into site B's up/: the broker drops it, the cloud never sees it.
        site_a.publish(TOPICS.up("site-b", "session"), "a-forged-as-b")
        site_a.publish(TOPICS.up("site-a", "session"), "marker-1")
        assert cloud.messages_until(b"marker-1") == [(TOPICS.up("site-a", "session"), b"marker-1")]

        # Nor command itself, nor command site B.
        site_a.publish(TOPICS.down("site-a"), "a-commands-itself")
        site_a.publish(TOPICS.down("site-b"), "a-commands-b")
        site_a.publish(TOPICS.up("site-a", "result"), "marker-2")
        assert cloud.messages_until(b"marker-2") == [(TOPICS.up("site-a", "result"), b"marker-2")]

        # Site A cannot read site B's down/, even when it subscribes to it by name or wildcard.
        site_a.subscribe(TOPICS.down("site-b"))
        site_a.subscribe("evpark/sites/+/down/#")
        site_a.subscribe("evpark/#")
        cloud.publish(TOPICS.down("site-b"), "for-b-only")
        assert site_b.next_message() == (TOPICS.down("site-b"), b"for-b-only")
        cloud.publish(TOPICS.down("site-a"), "for-a")
        received = site_a.messages_until(b"for-a")
        assert [payload for _, payload in received if payload != b"for-a"] == [], received
        assert all(topic == TOPICS.down("site-a") for topic, _ in received)

        # ...nor anybody's uplink.
        site_b.publish(TOPICS.up("site-b", "bay"), "b-bay")
        assert cloud.messages_until(b"b-bay")[-1] == (TOPICS.up("site-b", "bay"), b"b-bay")
        cloud.publish(TOPICS.down("site-a"), "marker-3")
        assert [payload for _, payload in site_a.messages_until(b"marker-3")] == [b"marker-3"]


def test_anonymous_and_wrong_passwords_are_refused(tmp_path: Path) -> None:
    with broker(tmp_path) as running:
        with pytest.raises(ConnectionRefusedError), client(running.port, None):
            pass
        with pytest.raises(ConnectionRefusedError), client(running.port, "site-a", password="guess"):
            pass


def test_production_config_serves_tls_with_real_certificates(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    certs = tmp_path / "certs"
    certs.mkdir()
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(certs / "server.key"), "-out", str(certs / "server.crt")],
        check=True, capture_output=True, timeout=60)
    shutil.copy(certs / "server.crt", certs / "ca.crt")
    folder = tmp_path / "broker"
    folder.mkdir()
    with broker(folder, certs=certs) as running, \
            client(running.port, "evpark-cloud", ca_file=certs / "ca.crt") as cloud, \
            client(running.port, "site-a", ca_file=certs / "ca.crt") as site_a:
        cloud.subscribe("evpark/sites/+/up/#")
        site_a.publish(TOPICS.up("site-a", "site"), "hello over TLS")
        assert cloud.next_message() == (TOPICS.up("site-a", "site"), b"hello over TLS")
