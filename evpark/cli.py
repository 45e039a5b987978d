"""The ``evpark`` command: run the whole system, one service, the edge, or migrations."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import typing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from cloud.platform.logging import configure_logging

app = typer.Typer(help="evpark: edge-to-cloud control for parking garages with EV chargers.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True, soft_wrap=True)  # a path or URL in a message stays whole (copyable)


def _service_names() -> list[str]:
    from cloud.registry import SERVICES

    return list(SERVICES)


ServiceName = StrEnum("ServiceName", {name: name for name in _service_names()})  # type: ignore[misc]
"""Every registered cloud service and the gateway (``cloud/registry.py``)."""


def up(
    demo: Annotated[int, typer.Option("--demo", help="also run N simulated chargers that keep charging",
                                      min=0, max=200)] = 0,
    data_dir: Annotated[Path, typer.Option(help="where databases and the edge's store live")] = Path(".evpark"),
    host: Annotated[str, typer.Option(help="address every part listens on")] = "127.0.0.1",
    ocpp_port: Annotated[int, typer.Option(help="edge OCPP 1.6J endpoint")] = 9000,
    admin_port: Annotated[int, typer.Option(help="edge admin API")] = 9001,
    mqtt_port: Annotated[int, typer.Option(help="embedded MQTT broker (1883 is left to Mosquitto)")] = 1884,
    site_id: Annotated[str, typer.Option(help="id of the embedded site")] = "demo-site",
    site: Annotated[Path | None, typer.Option("--site", help="run the edge with this site file instead of the "
                                              "bundled demo site (bays of each type, some served by chargers)")
                    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    **service_ports: int,
) -> None:
    """Run broker, services, gateway and one edge on this machine, on embedded defaults."""
    from edge.siteconfig import SiteConfigError
    from evpark.up import ComponentFailed, PortInUse, UpOptions, run_up

    configure_logging(log_level)
    ports = {name.removesuffix("_port"): port for name, port in service_ports.items()}
    options = UpOptions(data_dir=data_dir, host=host, service_ports=ports, ocpp_port=ocpp_port,
                        admin_port=admin_port, mqtt_port=mqtt_port, site_id=site_id, demo_chargers=demo,
                        site_file=site)
    try:
        asyncio.run(run_up(options))
    except PortInUse as exc:
        err.print(f"[red]evpark up: {exc}[/red]")
        raise typer.Exit(2) from None
    except ComponentFailed as exc:
        err.print(f"[red]evpark up: {exc}; see the log above[/red]")
        raise typer.Exit(1) from None
    except SiteConfigError as exc:
        err.print(f"[red]evpark up: {exc}[/red]")
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        pass


def _with_service_port_options(command: Any) -> Any:
    """``--<service>-port`` for every registered service, before the fixed options of ``up``."""
    from cloud.registry import specs

    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)  # this module's annotations are strings
    fixed = [p.replace(annotation=hints[p.name]) for p in signature.parameters.values()
             if p.kind is not inspect.Parameter.VAR_KEYWORD]
    per_service = [
        inspect.Parameter(f"{spec.name}_port", inspect.Parameter.KEYWORD_ONLY, default=spec.port,
                          annotation=Annotated[int, typer.Option(help=f"{spec.name} service" if spec.kind == "service"
                                                                 else "REST API gateway")])
        for spec in specs()
    ]
    gateway_first = sorted(per_service, key=lambda p: p.name != "gateway_port")
    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed[:3]] + gateway_first + \
        [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in fixed[3:]]
    command.__signature__ = signature.replace(parameters=params)
    return command


app.command(name="up")(_with_service_port_options(up))


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="which service to run")],  # type: ignore[valid-type]
    host: Annotated[str | None, typer.Option(help="listen address (default EVPARK_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: the service's EVPARK_<NAME>_PORT)")] = None,
) -> None:
    """Run one cloud service (production: settings from EVPARK_* environment variables)."""
    import uvicorn

    from cloud.platform.http_server import uvicorn_options
    from cloud.registry import spec as spec_of

    settings = _cloud_settings()
    configure_logging(settings.log_level)
    spec = spec_of(str(service.value))
    try:
        the_app = spec.build_app(settings)
    except ValueError as exc:  # a setting of the service refused before anything starts (pydantic's errors too)
        err.print(f"[red]evpark serve {spec.name}: {exc}[/red]")
        raise typer.Exit(2) from None
    uvicorn.run(the_app, host=host or settings.host, port=port or settings.port_of(spec.name), log_config=None,
                access_log=False, proxy_headers=False,  # the gateway decides whom to believe (trusted_proxies)
                **uvicorn_options(settings.header_timeout_seconds))


@app.command()
def ingest(
    heartbeat: Annotated[Path | None, typer.Option(help="touch this file every 5 s while both brokers are "
                                                   "connected (for a container's probes)")] = None,
) -> None:
    """Run the ingest bridge (EVPARK_INGEST=partitioned): the cloud's one MQTT reader, forwarding every site's
    uplink to RabbitMQ partitions by site, and commands down (cloud/platform/ingest.py). Run one."""
    from cloud.platform.ingest import UplinkBridge
    from cloud.registry import specs
    from mqtt import Topics

    settings = _cloud_settings()
    configure_logging(settings.log_level)
    if not settings.amqp_url:
        err.print("[red]evpark ingest: EVPARK_AMQP_URL must point to RabbitMQ (the partitions are its queues)[/red]")
        raise typer.Exit(2)
    username, password = settings.mqtt_login("ingest")
    bridge = UplinkBridge(amqp_url=settings.amqp_url, mqtt_host=settings.mqtt_host, mqtt_port=settings.mqtt_port,
                          topics=Topics(settings.mqtt_topic_root), partitions=settings.ingest_partitions,
                          readers={s.name: s.mqtt_categories for s in specs() if s.mqtt_categories},
                          username=username, password=password, tls=settings.mqtt_tls, heartbeat=heartbeat)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(bridge.run())


@app.command()
def edge(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="site file (TOML)", exists=True,
                                                 dir_okay=False)] = None,
) -> None:
    """Run a site's edge agent (OCPP central system, uplink to the cloud)."""
    from edge.app import run_edge
    from edge.settings import EdgeSettings
    from edge.siteconfig import SiteConfig, load_site

    site_config: SiteConfig | None = None
    try:
        if config is not None:
            settings, site_config = load_site(config)  # one read of the site file
        else:
            settings = EdgeSettings()
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]evpark edge: {exc}[/red]")
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_edge(settings, site_config))


@app.command()
def migrate(
    services: Annotated[list[ServiceName] | None, typer.Argument(  # type: ignore[valid-type]
        help="services to migrate (default: all)")] = None,
) -> None:
    """Create each service's database if missing and bring its schema up to date."""
    from cloud.platform.db import Database
    from cloud.registry import domain_services

    settings = _cloud_settings()
    configure_logging(settings.log_level, json=False)
    wanted = {str(s.value) for s in services} if services else None
    chosen = [spec for spec in domain_services()
              if spec.migrations is not None and (wanted is None or spec.name in wanted)]

    async def run() -> None:
        for spec in chosen:
            assert spec.migrations is not None
            db = Database(settings.database_url_for(spec.name))
            try:
                await db.connect()
                await db.migrate(spec.migrations)
            finally:
                await db.close()
            err.print(f"[green]{spec.name}: schema up to date[/green]")

    try:
        asyncio.run(run())
    except OSError as exc:
        err.print(f"[red]evpark migrate: cannot reach the database ({exc}); check EVPARK_DATABASE_URL[/red]")
        raise typer.Exit(1) from None


from evpark.events_cli import events_app  # noqa: E402  (the sub-command group needs `err` and settings)

app.add_typer(events_app, name="events")

from evpark.sites_cli import sites_app  # noqa: E402

app.add_typer(sites_app, name="sites")

from evpark.analytics_cli import analytics_app  # noqa: E402

app.add_typer(analytics_app, name="analytics")

accounts_app = typer.Typer(help="Accounts of the built-in accounts service.", no_args_is_help=True,
                           add_completion=False)
app.add_typer(accounts_app, name="accounts")


@accounts_app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="the admin's e-mail address (the login)")],
) -> None:
    """Create an admin account with a random password, printed once and written to <data dir>/admin-password."""
    from cloud.accounts.bootstrap import ensure_admin
    from evpark.up import remember_admin_password

    settings = _cloud_settings()
    configure_logging(settings.log_level, json=False)
    try:
        password = asyncio.run(ensure_admin(settings, email))
    except OSError as exc:
        err.print(f"[red]evpark accounts: cannot reach the database ({exc}); check EVPARK_DATABASE_URL[/red]")
        raise typer.Exit(1) from None
    except ValueError as exc:
        err.print(f"[red]evpark accounts: {exc}[/red]")
        raise typer.Exit(2) from None
    if password is None:
        err.print(f"[yellow]{email} exists already; its password is unchanged (reset it with "
                  "POST /auth/password-reset)[/yellow]")
        raise typer.Exit(1)
    path = remember_admin_password(settings.data_dir, email, password)
    print(f"admin {email} created; password (shown once, also in {path}): {password}")


def _cloud_settings():  # type: ignore[no-untyped-def]
    from cloud.platform.settings import CloudSettings

    try:
        return CloudSettings()
    except ValidationError as exc:
        err.print(f"[red]evpark: invalid settings: {exc}[/red]")
        raise typer.Exit(2) from None


def main() -> None:
    app()
