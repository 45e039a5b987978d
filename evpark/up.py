"""``evpark up``: the whole system in one process on embedded defaults.

Broker (amqtt), every registered cloud service (:mod:`cloud.registry`), the gateway and one
site's edge, sharing an in-process event bus and cache; with ``demo`` also simulated chargers
that keep charging and simulated bay sensors (arrivals and departures). The edge runs the
bundled demo site (``evpark/demo-site.toml``: bays of each type, some served by chargers) unless
``site_file`` names the operator's own site file.
Production runs each part as its own process instead (``evpark serve …``, ``evpark edge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import structlog

from cloud.platform.cache import MemoryCache
from cloud.platform.events import InProcessBus
from cloud.platform.settings import CloudSettings
from cloud.registry import specs
from edge.app import Edge
from edge.settings import EdgeSettings
from edge.siteconfig import SiteConfig, load_site_config
from evpark.broker import EMBEDDED_USER, EmbeddedBroker
from evpark.servers import make_server, port_free, wait_started

log = structlog.get_logger(__name__)


class PortInUse(RuntimeError):
    pass


def default_service_ports() -> dict[str, int]:
    return {spec.name: spec.port for spec in specs()}


@dataclass
class UpOptions:
    data_dir: Path = Path(".evpark")
    host: str = "127.0.0.1"
    service_ports: dict[str, int] = field(default_factory=default_service_ports)
    """Listen port of each registered service and the gateway (``--<name>-port``)."""
    ocpp_port: int = 9000
    admin_port: int = 9001
    mqtt_port: int = 1884
    site_id: str = "demo-site"
    demo_chargers: int = 0
    site_file: Path | None = None
    """The operator's site file; None: the bundled demo site (:data:`DEMO_SITE`)."""

    @property
    def gateway_port(self) -> int:
        return self.service_ports["gateway"]

    def ports(self) -> dict[str, int]:
        named = {f"--{name}-port": port for name, port in self.service_ports.items()}
        return {**named, "--ocpp-port": self.ocpp_port, "--admin-port": self.admin_port,
                "--mqtt-port": self.mqtt_port}


def check_ports(options: UpOptions) -> None:
    for flag, port in options.ports().items():
        if not port_free(options.host, port):
            raise PortInUse(f"port {port} on {options.host} is already in use; stop what holds it or "
                            f"choose another with {flag}")


class ComponentFailed(RuntimeError):
    pass


async def run_up(options: UpOptions, *, stop: asyncio.Event | None = None,
                 ready: asyncio.Event | None = None) -> None:
    """Run everything until ``stop`` is set (or SIGINT/SIGTERM); raise if a part dies."""
    check_ports(options)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
            loop.add_signal_handler(sig, stop.set)
    site_config = site_config_for(options)
    if options.site_file is not None:  # the operator's file names its site
        options = dataclasses.replace(options, site_id=site_config.site_id)
    cloud, edge_settings = _settings(options)
    bus = InProcessBus()
    cache = MemoryCache()
    await bus.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(EmbeddedBroker(options.host, options.mqtt_port,
                                                           options.data_dir / "broker"))
            watched: list[asyncio.Task[Any]] = []
            for spec in specs():  # registry order: the gateway comes last
                adapters: dict[str, Any] = {"cache": cache} if spec.kind == "gateway" else {"bus": bus, "cache": cache}
                app = spec.build_app(cloud, **adapters)
                port = cloud.port_of(spec.name)
                watched.append(await stack.enter_async_context(serving(app, options.host, port, spec.name)))
            # On the way out the bus closes before any service stops: no service delivers into one that
            # is shutting down; what its outbox did not relay yet waits there for the next start.
            stack.push_async_callback(bus.close)
            logins = await _bootstrap_accounts(options, cloud)
            edge = await stack.enter_async_context(Edge(edge_settings, site_config))
            watched.append(asyncio.create_task(edge.run_forever(), name="edge"))
            if options.demo_chargers:
                watched.append(asyncio.create_task(_demo(options, stop, logins), name="demo"))
                sensors = _demo_sensors(site_config)
                if sensors:
                    watched.append(asyncio.create_task(_demo_bays(options, site_config, sensors, stop),
                                                       name="demo-bays"))
            _announce(options)
            if ready is not None:
                ready.set()
            await _until_stopped_or_failed(stop, watched)
    finally:
        await bus.close()
        await cache.close()


async def _until_stopped_or_failed(stop: asyncio.Event, watched: list[asyncio.Task[Any]]) -> None:
    stopper = asyncio.create_task(stop.wait(), name="stop")
    done, _ = await asyncio.wait([stopper, *watched], return_when=asyncio.FIRST_COMPLETED)
    failed = [t for t in done if t is not stopper]
    # HTTP servers are shut down gracefully by `serving` (their apps' lifespans end in order);
    # cancelling them here would tear their lifespans apart mid-way and log a traceback each.
    others = [t for t in (stopper, *watched) if not t.get_name().startswith("http:")]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)
    if failed:
        task = failed[0]
        cause = None if task.cancelled() else task.exception()
        raise ComponentFailed(f"{task.get_name()} stopped unexpectedly: {cause!r}")


@contextlib.asynccontextmanager
async def serving(app: Any, host: str, port: int, name: str) -> AsyncIterator[asyncio.Task[None]]:
    """Serve ``app`` until the block ends; yields the server's task."""
    server = make_server(app, host, port)
    task = asyncio.create_task(server.serve(), name=f"http:{name}")
    try:
        await wait_started(server, task, f"the {name} service")
        yield task
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


def _settings(options: UpOptions) -> tuple[CloudSettings, EdgeSettings]:
    topic_root = "evpark"
    cloud = CloudSettings(
        data_dir=options.data_dir / "cloud", database_url="", amqp_url="", redis_url="",
        mqtt_host=options.host, mqtt_port=options.mqtt_port, mqtt_username=EMBEDDED_USER,
        mqtt_topic_root=topic_root, host=options.host,
        ports={**default_service_ports(), **options.service_ports}, urls={spec.name: "" for spec in specs()},
    )
    edge = EdgeSettings(
        site_id=options.site_id, data_dir=options.data_dir / "edge", ocpp_host=options.host,
        ocpp_port=options.ocpp_port, admin_host=options.host, admin_port=options.admin_port,
        accept_unknown_chargers=True, mqtt_host=options.host,
        mqtt_port=options.mqtt_port, mqtt_username=options.site_id, mqtt_topic_root=topic_root,
    )
    return cloud, edge


DEMO_SITE = Path(__file__).parent / "demo-site.toml"
"""The site `evpark up` runs when no site file is given: {site_id}, {host}, {mqtt_port} filled in."""


def site_config_for(options: UpOptions) -> SiteConfig:
    """The operator's site file (``--site``), or the bundled demo site written to the data dir."""
    if options.site_file is not None:
        return load_site_config(options.site_file)
    text = DEMO_SITE.read_text(encoding="utf-8")
    for key, value in (("site_id", options.site_id), ("host", options.host), ("mqtt_port", str(options.mqtt_port))):
        text = text.replace("{" + key + "}", value)
    path = options.data_dir / "demo-site.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return load_site_config(path)


def _demo_sensors(config: SiteConfig) -> dict[str, str]:
    """bay id → sensor id of the site's MQTT sensors (those `--demo` simulates)."""
    mqtt = config.sensors.mqtt
    if mqtt is None:
        return {}
    return {bay_id: sensor_id for sensor_id, bay_id in mqtt.sensors.items()}


async def _demo_bays(options: UpOptions, config: SiteConfig, sensors: dict[str, str], stop: asyncio.Event) -> None:
    from chargepoint_sim.bay_demo import run_bay_demo

    mqtt = config.sensors.mqtt
    assert mqtt is not None
    await run_bay_demo(config.site_id, sensors, host=mqtt.host, port=mqtt.port, root=mqtt.topic_root,
                       username=mqtt.username or f"{config.site_id}-sensors", stop=stop)


ADMIN_EMAIL = "admin@evpark.local"


def remember_admin_password(data_dir: Path, email: str, password: str) -> Path:
    """Write the admin's login to ``<data_dir>/admin-password``, readable by its owner only."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "admin-password"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(f"{email}\n{password}\n", encoding="utf-8")
    return path


async def _bootstrap_accounts(options: UpOptions, cloud: CloudSettings) -> dict[str, str]:
    """The admin (and, with --demo, a demo operator and driver); returns email → password of the demo users."""
    from cloud.accounts.bootstrap import ensure_admin, ensure_demo_users

    path = options.data_dir / "admin-password"
    password = await ensure_admin(cloud, ADMIN_EMAIL)
    if password is not None:
        await asyncio.to_thread(remember_admin_password, options.data_dir, ADMIN_EMAIL, password)
        print(f"\nadmin login: {ADMIN_EMAIL} / {password}   (shown once; also in {path})", flush=True)
    else:
        print(f"\nadmin login: {ADMIN_EMAIL}, password in {path}", flush=True)
    logins: dict[str, str] = {}
    if options.demo_chargers:
        logins = await ensure_demo_users(cloud, options.site_id)
        for email, demo_password in logins.items():
            print(f"demo login: {email} / {demo_password}", flush=True)
    return logins


def _announce(options: UpOptions) -> None:
    log.info(
        "evpark is up",
        gateway=f"http://{options.host}:{options.gateway_port}",
        ocpp=f"ws://{options.host}:{options.ocpp_port}/ocpp/<chargePointId>",
        edge_admin=f"http://{options.host}:{options.admin_port}",
        mqtt=f"mqtt://{options.host}:{options.mqtt_port}",
        site_id=options.site_id,
        demo_chargers=options.demo_chargers,
    )


async def _demo(options: UpOptions, stop: asyncio.Event, logins: dict[str, str]) -> None:
    """Register a demo vehicle per simulated charger (the demo driver's), then keep them charging."""
    from chargepoint_sim.demo import run_demo

    id_tags = [f"DEMO{n:04d}" for n in range(1, options.demo_chargers + 1)]
    gateway = f"http://{options.host}:{options.gateway_port}"
    driver = next((email for email in logins if email.startswith("driver")), None)
    async with httpx.AsyncClient(base_url=gateway, timeout=10) as client:
        if driver is not None:
            login = await client.post("/auth/login", json={"email": driver, "password": logins[driver]})
            if login.status_code == 200:
                client.headers["authorization"] = f"Bearer {login.json()['access_token']}"
            else:
                log.error("demo driver cannot log in", status=login.status_code, body=login.text)
        for n, tag in enumerate(id_tags, start=1):
            response = await client.post("/vehicles/register", json={"plate": f"DEMO-{n}", "id_tags": [tag]})
            if response.status_code not in (201, 409):
                log.error("demo vehicle not registered", status=response.status_code, body=response.text)
    await run_demo(f"ws://{options.host}:{options.ocpp_port}/ocpp", options.demo_chargers, id_tags, stop=stop)
