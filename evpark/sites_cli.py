"""``evpark sites add|list|remove``: the list of sites and their broker credentials.

The parking service owns the list (its database, the same settings as ``evpark serve`` and
``evpark migrate``: ``EVPARK_DATABASE_URL``, ``EVPARK_DATA_DIR``). ``add`` registers the site and
writes its Mosquitto password-file line and ACL block (:mod:`evpark.broker_access`) in one go,
printing the broker password once; Mosquitto reads both files again on SIGHUP
(``systemctl reload mosquitto``).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cloud.platform.settings import CloudSettings
from evpark.broker_access import BrokerFileError, BrokerFiles, new_password

sites_app = typer.Typer(help="Sites: register them with their broker credentials, list them, remove them.",
                        no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)

PasswordFile = Annotated[Path, typer.Option(
    "--password-file", envvar="EVPARK_MQTT_PASSWORD_FILE", help="Mosquitto's password_file")]
AclFile = Annotated[Path, typer.Option("--acl-file", envvar="EVPARK_MQTT_ACL_FILE", help="Mosquitto's acl_file")]
DEFAULT_PASSWORD_FILE = Path("/etc/mosquitto/passwd")
DEFAULT_ACL_FILE = Path("/etc/mosquitto/acl.conf")
RELOAD_HINT = "reload Mosquitto to apply it: sudo systemctl reload mosquitto (or kill -HUP <pid>)"


def _settings() -> CloudSettings:
    from cloud.platform.logging import configure_logging
    from evpark.cli import _cloud_settings

    configure_logging("WARNING", json=False)  # stdout is for the password and the list
    return _cloud_settings()  # type: ignore[no-any-return]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]evpark sites: {message}[/red]", highlight=False)
    return typer.Exit(code)


def _run(coro: Any) -> Any:
    from cloud.contracts.errors import DomainError

    try:
        return asyncio.run(coro)
    except BrokerFileError as exc:
        raise _fail(str(exc), 1) from None
    except DomainError as exc:
        field = "site_id" if getattr(exc, "code", None) in ("invalid_site_id", "site_exists", "unknown_site") else ""
        raise _fail(f"{field + ': ' if field else ''}{exc}", 2) from None
    except OSError as exc:
        raise _fail(f"cannot reach the parking database ({exc}); check EVPARK_DATABASE_URL", 1) from None


@sites_app.command("add")
def add(
    site_id: Annotated[str, typer.Argument(help="the new site's id: its MQTT username and topic level")],
    password_file: PasswordFile = DEFAULT_PASSWORD_FILE,
    acl_file: AclFile = DEFAULT_ACL_FILE,
) -> None:
    """Register a site and create its broker user; prints its password once."""
    from cloud.parking import bootstrap
    from cloud.parking.domain import InvalidSiteId, check_new_site_id

    try:
        check_new_site_id(site_id)
    except InvalidSiteId as exc:
        raise _fail(f"site_id: {exc}") from None
    settings = _settings()
    files = BrokerFiles(password_file, acl_file, root=settings.mqtt_topic_root)
    try:
        files.check()  # before the database: a file that cannot be written changes nothing
    except BrokerFileError as exc:
        raise _fail(str(exc), 1) from None
    password = new_password()

    async def provision(site: str) -> None:
        await asyncio.to_thread(files.add_site, site, password)

    _run(bootstrap.add_site(settings, site_id, provision))
    print(f"site {site_id} added")
    print(f"mqtt_username = {json.dumps(site_id)}")
    print(f"mqtt_password = {json.dumps(password)}   (shown once: put it in the site's edge configuration)")
    print(f"wrote {password_file} and {acl_file}; {RELOAD_HINT}")


@sites_app.command("list")
def list_sites(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line")] = False,
) -> None:
    """Every site: registered ones and those known only from their messages, with their link state."""
    from cloud.parking import bootstrap

    sites = _run(bootstrap.list_sites(_settings()))
    if as_json:
        for site in sites:
            out.print_json(site.model_dump_json(), indent=None)
        return
    if not sites:
        out.print("No sites. Add one with [bold]evpark sites add SITE_ID[/bold].")
        return
    table = Table(title=f"{len(sites)} site(s)")
    for column in ("site", "registered (UTC)", "link", "since (UTC)", "last message (UTC)"):
        table.add_column(column)
    for site in sites:
        table.add_row(site.site_id, _time(site.registered_at) or "no: known from its messages",
                      site.link.state + (f" ({site.link.reason})" if site.link.reason else ""),
                      _time(site.link.since), _time(site.last_seen_at))
    out.print(table)


@sites_app.command("remove")
def remove(
    site_id: Annotated[str, typer.Argument(help="the site to forget")],
    password_file: PasswordFile = DEFAULT_PASSWORD_FILE,
    acl_file: AclFile = DEFAULT_ACL_FILE,
) -> None:
    """Forget a site and delete its broker user and ACL block (its bays' history stays)."""
    from cloud.parking import bootstrap

    settings = _settings()
    files = BrokerFiles(password_file, acl_file, root=settings.mqtt_topic_root)
    try:
        files.check()
    except BrokerFileError as exc:
        raise _fail(str(exc), 1) from None

    async def deprovision(site: str) -> None:
        await asyncio.to_thread(files.remove_site, site)

    _run(bootstrap.remove_site(settings, site_id, deprovision))
    print(f"site {site_id} removed from the list, {password_file} and {acl_file}; {RELOAD_HINT}")


def _time(value: Any) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
