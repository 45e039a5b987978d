from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import pytest

from cloud.platform.identity import KeyRing
from cloud.registry import SERVICES, domain_services
from edge.uplink import uplink_client_id
from tests.e2e.harness import EVPARK, System
from tests.support import services

REGISTERED = tuple(SERVICES)
"""Every registered cloud service and the gateway (cloud/registry.py)."""


def embedded(folder: Path) -> System:
    names = (*REGISTERED, "ocpp", "admin", "mqtt")
    ports = {name: services.free_port() for name in names}
    system = System(gateway=f"http://127.0.0.1:{ports['gateway']}", ocpp=f"ws://127.0.0.1:{ports['ocpp']}/ocpp",
                    mqtt_port=ports["mqtt"])
    options = [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    system.start("up", ["up", "--data-dir", str(folder / "data"), *options], {}, folder)
    system.password_file = folder / "data" / "admin-password"
    return system


def production(folder: Path, *, mqtt_port: int, amqp_url: str, name: str, site_file: str | None = None,
               replicas: dict[str, int] | None = None) -> System:
    """Every part as its own process on PostgreSQL, RabbitMQ, Redis and Mosquitto, with fresh names.

    With ``replicas`` (e.g. ``{"charging": 3}``), ingest is partitioned (``EVPARK_INGEST=partitioned``): the
    ingest bridge runs, and each named service that many times (the gateway knows the first)."""
    ports = {n: services.free_port() for n in (*REGISTERED, "ocpp")}
    root = f"evpark-e2e-{name}"
    env = {
        "EVPARK_ENV": "production",
        "EVPARK_DATA_DIR": str(folder / "cloud-data"),
        "EVPARK_JWT_KEYS_DIR": str(folder / "jwt-keys"),
        "EVPARK_RATE_LIMIT_PER_MINUTE": "1000000",  # the tests poll hard; rate limits have their own tests
        "EVPARK_ACCESS_TOKEN_MINUTES": "240",  # a soak outlives the default 15 minutes of the admin's token
        "EVPARK_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/evpark_{name}_{{service}}",
        "EVPARK_AMQP_URL": amqp_url,
        "EVPARK_REDIS_URL": "redis://127.0.0.1:6379/0",
        "EVPARK_CACHE_PREFIX": f"{root}:",
        "EVPARK_MQTT_PORT": str(mqtt_port),
        "EVPARK_MQTT_USERNAME": "evpark-cloud",
        "EVPARK_MQTT_TOPIC_ROOT": root,
        **{f"EVPARK_{name.upper()}_PORT": str(ports[name]) for name in REGISTERED},
        "EVPARK_EDGE_SITE_ID": "e2e-site",
        "EVPARK_EDGE_DATA_DIR": str(folder / "edge"),
        "EVPARK_EDGE_OCPP_PORT": str(ports["ocpp"]),
        "EVPARK_EDGE_ADMIN_PORT": "0",
        "EVPARK_EDGE_MQTT_PORT": str(mqtt_port),
        "EVPARK_EDGE_MQTT_USERNAME": "e2e-site",
        "EVPARK_EDGE_MQTT_TOPIC_ROOT": root,
        # Production turns this off by default; the test has no operator to enrol its charger.
        "EVPARK_EDGE_ACCEPT_UNKNOWN_CHARGERS": "true",
    }
    if replicas:
        env["EVPARK_INGEST"] = "partitioned"
    system = System(gateway=f"http://127.0.0.1:{ports['gateway']}", ocpp=f"ws://127.0.0.1:{ports['ocpp']}/ocpp",
                    mqtt_port=mqtt_port, topic_root=root, env=env)
    KeyRing.create(folder / "jwt-keys", "e2e-key-1")  # production refuses to start without signing keys
    template = migrated_template(env)
    apart(databases_from(template.name, name))
    system.password_file = folder / "cloud-data" / "admin-password"
    system.password_file.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template.password_file, system.password_file)
    if replicas:
        system.start("ingest", ["ingest"], env, folder)
    for service in REGISTERED:  # registry order: the gateway last
        system.start(service, ["serve", service], env, folder)
        for replica in range(2, (replicas or {}).get(service, 1) + 1):
            system.start(f"{service}-{replica}", ["serve", service, "--port", str(services.free_port())], env, folder)
    system.services = [f"http://127.0.0.1:{ports[service]}" for service in REGISTERED if service != "gateway"]
    if site_file is not None:
        (folder / "site.toml").write_text(site_file.format(root=root, mqtt_port=mqtt_port))
        system.after_ready.append(("edge", ["edge", "--config", str(folder / "site.toml")], env, folder))
    else:
        system.after_ready.append(("edge", ["edge"], env, folder))
    return system


@dataclass(frozen=True)
class Template:
    name: str
    """Its databases are ``evpark_{name}_{service}``."""
    password_file: Path
    """The admin's login that ``evpark accounts create-admin`` wrote."""


_template: list[Template] = []


def migrated_template(env: dict[str, str]) -> Template:
    """Every service's database as ``evpark migrate`` and ``evpark accounts create-admin`` leave them, made
    once per test process by those two commands and kept as PostgreSQL template databases: each production
    system is then created from them (:func:`databases_from`, about a second) instead of running both
    commands itself (some ten seconds of start-up and migrations on two busy cores). Dropped when the
    process exits."""
    if _template:
        return _template[0]
    name = services.fresh_name("tpl")
    folder = Path(tempfile.mkdtemp(prefix="evpark-e2e-template-"))
    keys = folder / "jwt-keys"
    KeyRing.create(keys, "e2e-template-key")
    made = {**os.environ, **env, "EVPARK_DATA_DIR": str(folder / "cloud-data"), "EVPARK_JWT_KEYS_DIR": str(keys),
            "EVPARK_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/evpark_{name}_{{service}}"}
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    atexit.register(lambda: asyncio.run(drop_databases(name)))
    for command in (["migrate"], ["accounts", "create-admin", "--email", "admin@e2e.example"]):
        done = subprocess.run([EVPARK, *command], env=made, capture_output=True, timeout=120, cwd=folder)
        assert done.returncode == 0, done.stderr.decode()
    _template.append(Template(name, folder / "cloud-data" / "admin-password"))
    return _template[0]


def apart(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to its end from code that may itself run inside an event loop (on a thread of its own)."""
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, work).result()


async def databases_from(template: str, name: str) -> None:
    """``evpark_{name}_{service}`` for every service with a database, copied from the template's."""
    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        for spec in domain_services():
            if spec.migrations is not None:
                await connection.execute(f'CREATE DATABASE "evpark_{name}_{spec.name}" '
                                         f'TEMPLATE "evpark_{template}_{spec.name}"')
    finally:
        await connection.close()


async def drop_databases(name: str) -> None:
    connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    try:
        for row in await connection.fetch("SELECT datname FROM pg_database WHERE datname LIKE $1",
                                          f"evpark_{name}_%"):
            await connection.execute(f'DROP DATABASE IF EXISTS "{row["datname"]}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture(params=["embedded", "production"])
async def system(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[System]:
    """The whole evpark, once on embedded defaults and once on the real services."""
    if request.param == "embedded":
        the_system = embedded(tmp_path)
        try:
            await asyncio.to_thread(the_system.wait_healthy, 120)
            yield the_system
        finally:
            await asyncio.to_thread(the_system.stop)
        return
    async with production_on_shared_broker(tmp_path) as the_system:
        yield the_system


@pytest.fixture
def private_broker_system(tmp_path: Path) -> Iterator[tuple[System, services.PrivateMosquitto]]:
    """Production mode on a Mosquitto of the test's own, which the test may stop and start."""
    for label, address in (("PostgreSQL", services.POSTGRES), ("RabbitMQ", services.RABBITMQ),
                           ("Redis", services.REDIS)):
        services.require(label, address)
    name = services.fresh_name("e")
    vhost = services.create_rabbitmq_vhost()
    try:
        with services.private_mosquitto() as broker:
            the_system = production(tmp_path, mqtt_port=broker.port,
                                    amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}", name=name)
            try:
                the_system.wait_healthy(120)
                yield the_system, broker
            finally:
                the_system.stop()
    finally:
        services.delete_rabbitmq_vhost(vhost)
        asyncio.run(drop_databases(name))


SENSOR_SITE = """
site_id = "e2e-site"

[[bays]]
id = "EV-1"
type = "ev"
charger_id = "CP-1"
connector_id = 1

[[bays]]
id = "EV-2"
type = "ev"
charger_id = "CP-1"
connector_id = 2

[[bays]]
id = "A-1"
type = "accessible"

[sensors.mqtt]
host = "127.0.0.1"
port = {mqtt_port}
username = "e2e-site-sensors"
topic_root = "{root}"
debounce = 0.3
stale_after = 600

[sensors.mqtt.sensors]
s-ev-1 = "EV-1"
s-ev-2 = "EV-2"
s-a-1 = "A-1"
"""


@contextlib.asynccontextmanager
async def production_on_shared_broker(folder: Path, site_file: str | None = None) -> AsyncIterator[System]:
    """Production mode on the real services and the shared Mosquitto, with fresh names."""
    for label, address in (("PostgreSQL", services.POSTGRES), ("RabbitMQ", services.RABBITMQ),
                           ("Redis", services.REDIS), ("Mosquitto", services.MOSQUITTO)):
        services.require(label, address)
    name = services.fresh_name("e")
    vhost = services.create_rabbitmq_vhost()
    try:
        the_system = production(folder, mqtt_port=services.MOSQUITTO[1],
                                amqp_url=f"amqp://guest:guest@127.0.0.1:5672/{vhost}", name=name,
                                site_file=site_file)
        try:
            await asyncio.to_thread(the_system.wait_healthy, 120)
            yield the_system
        finally:
            await asyncio.to_thread(the_system.stop)
            await forget_edge_session(services.MOSQUITTO[1], the_system.topic_root)
    finally:
        services.delete_rabbitmq_vhost(vhost)
        await drop_databases(name)


async def forget_edge_session(port: int, topic_root: str, site_id: str = "e2e-site") -> None:
    """Drop the stopped edge's persistent session from the shared broker (every production e2e system's edge is
    site ``e2e-site``, under a topic root of its own, so its client id is its own too)."""
    with contextlib.suppress(aiomqtt.MqttError):
        async with aiomqtt.Client("127.0.0.1", port, identifier=uplink_client_id(site_id, topic_root),
                                  username=site_id,
                                  clean_session=True):
            pass


@pytest.fixture
async def sensor_site_system(tmp_path: Path) -> AsyncIterator[System]:
    """Production mode with an edge that has a site file: three bays with MQTT sensors."""
    async with production_on_shared_broker(tmp_path, SENSOR_SITE) as the_system:
        yield the_system
