"""mqtt/mosquitto.conf + mqtt/acl.conf on a real Mosquitto: each site sees only its own topics,
and nobody takes a cloud service's session.

The broker runs on a free port with the production configuration, rewritten only where a test
must differ: its own port and temp paths, and no TLS listener (one test keeps TLS, with a
throw-away certificate, when openssl is installed). Its password file and ACL start from
``mqtt/acl.conf`` and get their sites as ``evpark sites add`` writes them (evpark.broker_access).
"""

from __future__ import annotations

import contextlib
import queue
import shutil
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from evpark.broker_access import BrokerFiles, cloud_acl
from mqtt.topics import Topics
from tests.support.production_broker import REPO_ACL, Broker, production_broker

SITES = {"site-a": "password-of-site-a", "site-b": "password-of-site-b"}
CLOUD = {"evpark-parking": "password-of-parking", "evpark-charging": "password-of-charging"}
PASSWORDS = {**SITES, **CLOUD}
PARKING_READS = ("bay", "site", "result")
TOPICS = Topics()  # the ACL names the production root, evpark


@contextlib.contextmanager
def broker(tmp_path: Path, *, certs: Path | None = None) -> Iterator[Broker]:
    files = BrokerFiles(tmp_path / "passwd", tmp_path / "acl.conf")
    shutil.copy(REPO_ACL, files.acl_file)
    for user, password in CLOUD.items():
        files.add_user(user, password)
    for site, password in SITES.items():
        files.add_site(site, password)
    with production_broker(tmp_path, password_file=files.password_file, acl_file=files.acl_file,
                           certs=certs) as running:
        yield running


@dataclass
class Client:
    """A paho MQTT 3.1.1 client that records what it receives."""

    name: str
    client: paho.Client
    received: queue.Queue[tuple[str, bytes]] = field(default_factory=queue.Queue)
    subacks: queue.Queue[list[int]] = field(default_factory=queue.Queue)
    disconnects: queue.Queue[object] = field(default_factory=queue.Queue)

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
           ca_file: Path | None = None, client_id: str | None = None) -> Iterator[Client]:
    inner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or f"{username}-{uuid.uuid4().hex[:8]}",
                        protocol=paho.MQTTv311, clean_session=client_id is None)
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

    def on_disconnect(_c: paho.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        wrapper.disconnects.put(reason)

    inner.on_connect = on_connect
    inner.on_disconnect = on_disconnect
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


def subscribe_as_parking(cloud: Client) -> None:
    for category in PARKING_READS:
        assert cloud.subscribe(TOPICS.up_all_sites(category)) == [1]
    assert cloud.subscribe(TOPICS.status_all_sites()) == [1]


def test_each_site_uses_its_own_topics_and_cannot_touch_another_site(tmp_path: Path) -> None:
    with broker(tmp_path) as running, client(running.port, "evpark-parking") as cloud, \
            client(running.port, "site-a") as site_a, client(running.port, "site-b") as site_b:
        subscribe_as_parking(cloud)
        site_a.subscribe(TOPICS.down("site-a"))
        site_b.subscribe(TOPICS.down("site-b"))

        # A site publishes into its own up/ and the cloud gets it.
        site_a.publish(TOPICS.up("site-a", "bay"), "a-own")
        assert cloud.next_message() == (TOPICS.up("site-a", "bay"), b"a-own")

        # Site A cannot publish into site B's up/: the broker drops it, the cloud never sees it.
        site_a.publish(TOPICS.up("site-b", "bay"), "a-forged-as-b")
        site_a.publish(TOPICS.up("site-a", "bay"), "marker-1")
        assert cloud.messages_until(b"marker-1") == [(TOPICS.up("site-a", "bay"), b"marker-1")]

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
            client(running.port, "evpark-parking", ca_file=certs / "ca.crt") as cloud, \
            client(running.port, "site-a", ca_file=certs / "ca.crt") as site_a:
        subscribe_as_parking(cloud)
        site_a.publish(TOPICS.up("site-a", "site"), "hello over TLS")
        assert cloud.next_message() == (TOPICS.up("site-a", "site"), b"hello over TLS")


def test_the_acl_in_mqtt_is_the_one_generated_from_the_registry() -> None:
    assert REPO_ACL.read_text(encoding="utf-8") == cloud_acl("evpark"), \
        "mqtt/acl.conf is out of date: run .venv/bin/python -m evpark.broker_access"


def test_a_site_cannot_take_a_cloud_services_session_by_its_client_id(tmp_path: Path) -> None:
    with broker(tmp_path) as running, \
            client(running.port, "evpark-parking", client_id="evpark-parking-evpark") as cloud, \
            client(running.port, "site-b") as site_b:
        subscribe_as_parking(cloud)
        # Site A sends the cloud service's client ids (the one MqttLink uses, and its username).
        for stolen in ("evpark-parking-evpark", "evpark-parking"):
            with client(running.port, "site-a", client_id=stolen) as site_a:
                site_a.publish(TOPICS.up("site-a", "bay"), f"a-as-{stolen}")
                site_b.publish(TOPICS.up("site-b", "bay"), f"b-while-a-is-{stolen}")
                received = cloud.messages_until(f"b-while-a-is-{stolen}".encode())
                assert (TOPICS.up("site-b", "bay"), f"b-while-a-is-{stolen}".encode()) in received
        # The cloud service was never kicked off, and keeps receiving.
        assert cloud.disconnects.empty()
        site_b.publish(TOPICS.up("site-b", "bay"), "still-there")
        assert cloud.messages_until(b"still-there")[-1] == (TOPICS.up("site-b", "bay"), b"still-there")


def test_a_cloud_service_reads_only_the_categories_it_consumes(tmp_path: Path) -> None:
    with broker(tmp_path) as running, client(running.port, "evpark-charging") as charging, \
            client(running.port, "site-a") as site_a:
        charging.subscribe("evpark/sites/+/up/#")
        site_a.publish(TOPICS.up("site-a", "bay"), "bay-not-for-charging")
        site_a.publish(TOPICS.up("site-a", "session"), "session-for-charging")
        assert charging.messages_until(b"session-for-charging") == [
            (TOPICS.up("site-a", "session"), b"session-for-charging")]


def test_a_site_publishes_its_own_status_and_will_but_not_another_sites(tmp_path: Path) -> None:
    with broker(tmp_path) as running, client(running.port, "evpark-parking") as cloud:
        subscribe_as_parking(cloud)
        with client(running.port, "site-a") as site_a:
            site_a.publish(TOPICS.status("site-b"), "a-says-b-is-offline")
            site_a.publish(TOPICS.status("site-a"), "a-online")
            assert cloud.messages_until(b"a-online") == [(TOPICS.status("site-a"), b"a-online")]
        inner = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="site-a", protocol=paho.MQTTv311)
        inner.username_pw_set("site-a", SITES["site-a"])
        inner.will_set(TOPICS.status("site-a"), "a-lost", qos=1, retain=True)
        inner.connect("127.0.0.1", running.port, keepalive=30)
        inner.loop_start()
        try:
            sock = inner.socket()
            assert isinstance(sock, socket.socket)
            sock.shutdown(socket.SHUT_RDWR)  # gone without DISCONNECT: the broker publishes the will
            assert cloud.next_message() == (TOPICS.status("site-a"), b"a-lost")
        finally:
            inner.loop_stop()
