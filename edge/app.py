"""The composition root of the edge agent: builds the store, the site, the OCPP server, the
uplink and the admin API from :class:`EdgeSettings`, and runs the long-lived loops (OCPP server,
liveness watch, uplink, admin API) under one TaskGroup.

::

    async with Edge(settings) as edge:
        print(edge.ocpp_port)
        await edge.run_forever()
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TypeVar

import structlog

from edge.admin import AdminServer, build_admin_app
from edge.baystates import BayStates
from edge.bayusage import BayUsageTracker
from edge.inventory import InventoryReporter
from edge.loadmgmt import LoadManager
from edge.logging import configure_logging
from edge.ocpp import FAST_ACTIONS, OcppServer
from edge.sensors import BayChange, SensorReader, sensor_readers
from edge.settings import EdgeConfigError, EdgeSettings
from edge.site import Site
from edge.siteconfig import SiteConfig
from edge.store import OutboxCap, Retention, Store
from edge.uplink import Uplink
from edge.validation import compile_schemas

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class Edge:
    """One site's edge agent. Enter it to start, exit it to stop everything cleanly."""

    def __init__(self, settings: EdgeSettings, site_config: SiteConfig | None = None) -> None:
        if site_config is not None and site_config.site_id != settings.site_id:
            raise EdgeConfigError(f"the site file describes site {site_config.site_id!r} but the edge runs as "
                                  f"{settings.site_id!r}; set site_id once, in the site file")
        self.settings = settings
        self.site_config = site_config
        self.load_manager: LoadManager | None = None
        """Shares the site's power limit; present when the site file has a [power] table."""
        self.bay_usage: BayUsageTracker | None = None
        """Charging, idle and overstay of the charger-served bays; present with a site file."""
        self.inventory: InventoryReporter | None = None
        self.sensors: list[SensorReader] = []
        """The bay-sensor readers the site file describes (Modbus pollers, the MQTT listener)."""
        self.bay_states: BayStates | None = None
        """Each bay's last reported occupancy (kept across restarts, re-sent after a loss at the cap)."""
        self._stack: AsyncExitStack | None = None
        self._store: Store | None = None
        self._site: Site | None = None
        self._ocpp: OcppServer | None = None
        self._uplink: Uplink | None = None
        self._admin: AdminServer | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()

    async def __aenter__(self) -> Edge:
        if self._stack is not None:
            raise RuntimeError("this Edge is already running")
        settings = self.settings
        stack = AsyncExitStack()
        try:
            self._store = store = await Store.open(settings.database_path, cap=_outbox_cap(self.site_config),
                                                   retention=_retention(self.site_config))
            stack.push_async_callback(store.close)
            self._site = site = Site(store, site_id=settings.site_id, heartbeat_interval=settings.heartbeat_interval,
                                     accept_unknown_chargers=settings.accept_unknown_chargers,
                                     unknown_chargers_pending=settings.unknown_chargers_pending,
                                     offline_accept_unknown_id_tags=settings.offline_accept_unknown_id_tags,
                                     call_timeout=settings.charger_call_timeout,
                                     min_security_profile=settings.min_security_profile)
            self._ocpp = await stack.enter_async_context(OcppServer(
                site, schemas=compile_schemas(FAST_ACTIONS), host=settings.ocpp_host, port=settings.ocpp_port,
                ping_interval=settings.ocpp_ping_interval or None, ping_timeout=settings.ocpp_ping_timeout,
                offline_after=settings.offline_after, ssl_context=_tls_context(settings)))
            site.chargers = self._ocpp
            self._uplink = Uplink(
                site, site_id=settings.site_id, host=settings.mqtt_host, port=settings.mqtt_port,
                topic_root=settings.mqtt_topic_root, username=settings.mqtt_username,
                password=settings.mqtt_password.get_secret_value() if settings.mqtt_password else None,
                tls=settings.mqtt_tls, edge_version=settings.edge_version, keepalive=settings.mqtt_keepalive,
                high_water_every=settings.mqtt_high_water_every,
            )
            site.cloud_online = self._uplink.connected.is_set
            config = self.site_config
            if config is not None:
                if config.power is not None:
                    self.load_manager = lm = LoadManager(site, config.power)
                    site.power = lm
                    site.observers.append(lm)
                    await lm.restore()
                self.bay_usage = BayUsageTracker(
                    (bay.id, bay.charger_id, bay.connector_id) for bay in config.bays
                    if bay.charger_id is not None and bay.connector_id is not None)
                await self.bay_usage.restore(store)
                site.observers.append(self.bay_usage)
                self.bay_states = BayStates(store, self.bay_usage, bay_ids=[bay.id for bay in config.bays])
                await self.bay_states.restore()
                lm_limit = self.load_manager
                self.inventory = InventoryReporter(config, store, lambda: lm_limit.limit_a if lm_limit else None)
                site.observers.append(self.inventory)
                if self.load_manager is not None:
                    self.load_manager.on_limit_changed = self.inventory.wake
            if settings.admin_enabled:
                token = settings.admin_secret
                self._admin = AdminServer(build_admin_app(site, token=token, load_manager=self.load_manager,
                                                          uplink=self._uplink, bay_usage=self.bay_usage),
                                          host=settings.admin_host, port=settings.admin_port)
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self.tasks = {
                "ocpp-server": tasks.create_task(self._ocpp.serve_forever(), name="edge.ocpp-server"),
                "liveness": tasks.create_task(self._ocpp.watch_liveness(), name="edge.liveness"),
                "uplink": tasks.create_task(self._uplink.run(), name="edge.uplink"),
                "outbox-maintenance": tasks.create_task(store.maintain(), name="edge.outbox-maintenance"),
                "sessions-report": tasks.create_task(
                    site.report_sessions_forever(settings.sessions_report_every, self._uplink.connected),
                    name="edge.sessions-report"),
            }
            if self._admin is not None:
                self.tasks["admin-api"] = tasks.create_task(self._admin.serve(), name="edge.admin-api")
            if config is not None:
                assert self.inventory is not None and self.bay_usage is not None and self.bay_states is not None
                await self.inventory.report()
                self.tasks["inventory"] = tasks.create_task(self.inventory.run(), name="edge.inventory")
                self.tasks["bay-usage"] = tasks.create_task(self.bay_usage.run(store), name="edge.bay-usage")
                self.tasks["bay-resend"] = tasks.create_task(self.bay_states.run(), name="edge.bay-resend")
                self.sensors = sensor_readers(config, self._on_bay_change)
                for reader in self.sensors:
                    self.tasks[reader.task_name] = tasks.create_task(reader.run(), name=reader.task_name)
                if self.load_manager is not None:
                    self.tasks["load-management"] = tasks.create_task(self.load_manager.run(),
                                                                      name="edge.load-management")
            # Runs first on exit (LIFO): stop the loops, then the TaskGroup waits for them.
            stack.callback(self._cancel_tasks)
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        log.info("edge.started", site_id=settings.site_id, ocpp_port=self.ocpp_port,
                 mqtt=f"{settings.mqtt_host}:{settings.mqtt_port}", data_dir=str(settings.data_dir))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        stack, self._stack = self._stack, None
        try:
            if stack is not None:
                await stack.__aexit__(exc_type, exc, tb)
        finally:
            self._store = self._site = self._ocpp = self._uplink = self._admin = None
            self.bay_states = None
            self._stop = asyncio.Event()
        log.info("edge.stopped", site_id=self.settings.site_id)

    async def _on_bay_change(self, change: BayChange) -> None:
        """A sensor's debounced change: queued for the cloud in the store's outbox."""
        change = await self._running(self.bay_states).changed(change)
        if self.bay_usage is not None:
            self.bay_usage.bay_changed(change.bay_id, change.state.value, change.changed_at)
        log.info("edge.bay_changed", bay_id=change.bay_id, state=change.state.value, reason=change.reason,
                 faulty=change.faulty)

    def _cancel_tasks(self) -> None:
        if self._admin is not None:
            self._admin.stop()  # uvicorn shuts down on its flag; cancelling it mid-startup leaks its socket
        for name, task in self.tasks.items():
            if name != "admin-api":
                task.cancel()

    @property
    def admin_port(self) -> int:
        """The TCP port of the admin API (the real one when 0 was configured)."""
        return self._running(self._admin).port

    @property
    def ocpp_port(self) -> int:
        """The TCP port the OCPP server is bound to (the real one when 0 was configured)."""
        return self._running(self._ocpp).port

    @property
    def store(self) -> Store:
        return self._running(self._store)

    @property
    def site(self) -> Site:
        return self._running(self._site)

    @property
    def ocpp(self) -> OcppServer:
        return self._running(self._ocpp)

    @property
    def uplink(self) -> Uplink:
        return self._running(self._uplink)

    @staticmethod
    def _running(part: _T | None) -> _T:
        if part is None:
            raise RuntimeError("the Edge is not running; use `async with Edge(settings) as edge`")
        return part

    async def run_forever(self) -> None:
        """Wait until :meth:`stop` is called (or a loop fails, which cancels this)."""
        await self._stop.wait()

    def stop(self) -> None:
        """Make :meth:`run_forever` return; leaving the ``async with`` then shuts down."""
        self._stop.set()


def _outbox_cap(config: SiteConfig | None) -> OutboxCap:
    if config is None:
        return OutboxCap()
    uplink = config.uplink
    return OutboxCap(max_events=uplink.outbox_max_events, max_bytes=int(uplink.outbox_max_mb * 1024 * 1024),
                     policy=uplink.at_cap)


def _retention(config: SiteConfig | None) -> Retention:
    if config is None:
        return Retention()
    return Retention(days=config.uplink.retention_days, envelopes=config.uplink.retention_envelopes)


def _tls_context(settings: EdgeSettings) -> ssl.SSLContext | None:
    """TLS for wss:// (Security Profile 2): TLS 1.2 or newer only (security whitepaper §2.2). With
    ``ocpp_tls_client_ca`` the handshake asks for a client certificate (Security Profile 3) and refuses one
    that the CA did not sign or that is expired; a charger may still send none (profile 2, Basic auth) and the
    admission then decides by the charger's own profile."""
    if settings.ocpp_tls_cert is None or settings.ocpp_tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.ocpp_tls_cert, settings.ocpp_tls_key)
    if settings.ocpp_tls_client_ca is not None:
        context.load_verify_locations(cafile=settings.ocpp_tls_client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def settle_heap() -> None:
    """Once the edge is up: keep what lives as long as the process out of the garbage collector's way.

    The modules, compiled schemas, pydantic models and settings loaded by then never die, yet every
    full collection walks them again: at saturation that was two 35 ms pauses a second (about 10% of
    the event loop). Frozen, they are skipped. Call it once per process, after startup (tests, which
    start many edges in one process, do not).
    """
    gc.collect()
    gc.freeze()


async def run_edge(settings: EdgeSettings, site_config: SiteConfig | None = None) -> None:
    """Run the edge until SIGTERM/SIGINT or cancellation (the ``evpark edge`` entry point)."""
    if not structlog.is_configured():
        configure_logging(settings.log_level)
    async with Edge(settings, site_config) as edge:
        settle_heap()
        loop = asyncio.get_running_loop()
        installed = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, edge.stop)
                installed.append(signum)
        try:
            await edge.run_forever()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
