"""The ``evpark`` command: run the whole system, one service, the edge, or migrations."""

from __future__ import annotations

import asyncio
import contextlib
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from cloud.platform.logging import configure_logging

app = typer.Typer(help="evpark: edge-to-cloud control for parking garages with EV chargers.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


class ServiceName(StrEnum):
    charging = "charging"
    vehicles = "vehicles"
    parking = "parking"
    gateway = "gateway"


MIGRATED = (ServiceName.charging, ServiceName.vehicles, ServiceName.parking)


@app.command()
def up(
    demo: Annotated[int, typer.Option("--demo", help="also run N simulated chargers that keep charging",
                                      min=0, max=200)] = 0,
    data_dir: Annotated[Path, typer.Option(help="where databases and the edge's store live")] = Path(".evpark"),
    host: Annotated[str, typer.Option(help="address every part listens on")] = "127.0.0.1",
    gateway_port: Annotated[int, typer.Option(help="REST API gateway")] = 8000,
    charging_port: Annotated[int, typer.Option(help="charging service")] = 8101,
    vehicles_port: Annotated[int, typer.Option(help="vehicle service")] = 8102,
    parking_port: Annotated[int, typer.Option(help="parking service")] = 8103,
    ocpp_port: Annotated[int, typer.Option(help="edge OCPP 1.6J endpoint")] = 9000,
    admin_port: Annotated[int, typer.Option(help="edge admin API")] = 9001,
    mqtt_port: Annotated[int, typer.Option(help="embedded MQTT broker (1883 is left to Mosquitto)")] = 1884,
    site_id: Annotated[str, typer.Option(help="id of the embedded site")] = "demo-site",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run broker, services, gateway and one edge on this machine, on embedded defaults."""
    from evpark.up import ComponentFailed, PortInUse, UpOptions, run_up

    configure_logging(log_level)
    options = UpOptions(data_dir=data_dir, host=host, gateway_port=gateway_port, charging_port=charging_port,
                        vehicles_port=vehicles_port, parking_port=parking_port, ocpp_port=ocpp_port,
                        admin_port=admin_port,
                        mqtt_port=mqtt_port, site_id=site_id,
                        demo_chargers=demo)
    try:
        asyncio.run(run_up(options))
    except PortInUse as exc:
        err.print(f"[red]evpark up: {exc}[/red]")
        raise typer.Exit(2) from None
    except ComponentFailed as exc:
        err.print(f"[red]evpark up: {exc}; see the log above[/red]")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass


@app.command()
def serve(
    service: Annotated[ServiceName, typer.Argument(help="which service to run")],
    host: Annotated[str | None, typer.Option(help="listen address (default EVPARK_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="listen port (default: the service's EVPARK_<NAME>_PORT)")] = None,
) -> None:
    """Run one cloud service (production: settings from EVPARK_* environment variables)."""
    import uvicorn

    settings = _cloud_settings()
    configure_logging(settings.log_level)
    if service == ServiceName.charging:
        from cloud.charging.app import build_app as build_charging

        the_app, default_port = build_charging(settings), settings.charging_port
    elif service == ServiceName.vehicles:
        from cloud.vehicles.app import build_app as build_vehicles

        the_app, default_port = build_vehicles(settings), settings.vehicles_port
    elif service == ServiceName.parking:
        from cloud.parking.app import build_app as build_parking

        the_app, default_port = build_parking(settings), settings.parking_port
    else:
        from cloud.gateway.app import build_app as build_gateway

        the_app, default_port = build_gateway(settings), settings.gateway_port
    uvicorn.run(the_app, host=host or settings.host, port=port or default_port, log_config=None,
                access_log=False, proxy_headers=True)


@app.command()
def edge(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="site file (TOML)", exists=True,
                                                 dir_okay=False)] = None,
) -> None:
    """Run a site's edge agent (OCPP central system, uplink to the cloud)."""
    from edge.app import run_edge
    from edge.settings import EdgeSettings
    from edge.siteconfig import SiteConfig, load_site_config

    site_config: SiteConfig | None = None
    try:
        settings = EdgeSettings.from_toml(config) if config else EdgeSettings()
        if config is not None and _has_bays(config):
            site_config = load_site_config(config)
    except (ValidationError, ValueError) as exc:
        err.print(f"[red]evpark edge: {exc}[/red]")
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_edge(settings, site_config))


def _has_bays(path: Path) -> bool:
    import tomllib

    try:
        return "bays" in tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return True  # let the site file loader name the problem with its line


@app.command()
def migrate(
    services: Annotated[list[ServiceName] | None, typer.Argument(help="services to migrate (default: all)")] = None,
) -> None:
    """Create each service's database if missing and bring its schema up to date."""
    from cloud.platform.db import Database

    settings = _cloud_settings()
    configure_logging(settings.log_level, json=False)
    chosen = [s for s in (services or list(MIGRATED)) if s in MIGRATED]

    async def run() -> None:
        for name in chosen:
            module = __import__(f"cloud.{name.value}.app", fromlist=["MIGRATIONS"])
            db = Database(settings.database_url_for(name.value))
            try:
                await db.connect()
                await db.migrate(module.MIGRATIONS)
            finally:
                await db.close()
            err.print(f"[green]{name.value}: schema up to date[/green]")

    try:
        asyncio.run(run())
    except OSError as exc:
        err.print(f"[red]evpark migrate: cannot reach the database ({exc}); check EVPARK_DATABASE_URL[/red]")
        raise typer.Exit(1) from None


def _cloud_settings():  # type: ignore[no-untyped-def]
    from cloud.platform.settings import CloudSettings

    try:
        return CloudSettings()
    except ValidationError as exc:
        err.print(f"[red]evpark: invalid settings: {exc}[/red]")
        raise typer.Exit(2) from None


def main() -> None:
    app()
