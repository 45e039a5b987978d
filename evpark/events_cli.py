"""``evpark events parked|replay``: what the services could not handle, and delivering it after a fix.

Parked messages sit in each service's own database (``parked_messages``), on both run modes,
so these commands read the same settings as ``evpark serve`` and ``evpark migrate``
(``EVPARK_DATABASE_URL``, ``EVPARK_DATA_DIR``). ``replay`` marks messages; each running service
re-delivers its marked messages to the consumer that parked them, within about a second, and
deletes each one delivered. The command waits for that (``--wait``) and reports the outcome.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cloud.platform.db import Database
from cloud.platform.parked import ParkedMessages, ParkedRow
from cloud.platform.settings import CloudSettings
from cloud.platform.spec import ServiceSpec

events_app = typer.Typer(help="Parked events and envelopes: list them, replay them after a fix.",
                         no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True, soft_wrap=True)  # a path or URL in a message stays whole (copyable)


def _settings() -> CloudSettings:
    from evpark.cli import _cloud_settings

    return _cloud_settings()  # type: ignore[no-any-return]


def _chosen(service: str | None) -> list[ServiceSpec]:
    from cloud.registry import domain_services

    specs = domain_services()
    if service is None:
        return specs
    chosen = [s for s in specs if s.name == service]
    if not chosen:
        names = ", ".join(s.name for s in specs)
        err.print(f"[red]evpark events: --service {service!r} is not a registered service ({names})[/red]")
        raise typer.Exit(2)
    return chosen


@asynccontextmanager
async def _stores(settings: CloudSettings, specs: list[ServiceSpec]) -> AsyncIterator[dict[str, ParkedMessages]]:
    """The parked-message table of each service whose database exists."""
    stores: dict[str, ParkedMessages] = {}
    databases: list[Database] = []
    try:
        for spec in specs:
            url = settings.database_url_for(spec.name)
            db = Database(url)
            if db.is_sqlite and db.url.database and not await asyncio.to_thread(Path(db.url.database).exists):
                continue  # never started on this data directory: nothing parked
            await db.connect()
            databases.append(db)
            stores[spec.name] = ParkedMessages(db, service=spec.name)
        yield stores
    finally:
        for db in databases:
            await db.close()


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except OSError as exc:
        err.print(f"[red]evpark events: cannot reach a service database ({exc}); check EVPARK_DATABASE_URL[/red]")
        raise typer.Exit(1) from None


def _row_json(service: str, row: ParkedRow) -> dict[str, Any]:
    return {"service": service, "id": row.id, "consumer": row.consumer, "source": row.source,
            "name": row.event_name, "attempts": row.attempts, "parked_at": row.received_at.isoformat(),
            "error": row.error,
            "replay_requested_at": row.replay_requested_at.isoformat() if row.replay_requested_at else None}


@events_app.command("parked")
def parked(
    service: Annotated[str | None, typer.Option(help="only this service's parked messages")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per line, with the payload")] = False,
) -> None:
    """List parked messages with the reason each was parked."""
    settings = _settings()

    async def run() -> list[tuple[str, ParkedRow]]:
        async with _stores(settings, _chosen(service)) as stores:
            return [(name, row) for name, store in stores.items() for row in await store.rows()]

    rows: list[tuple[str, ParkedRow]] = _run(run())
    if as_json:
        for name, row in rows:
            out.print_json(json.dumps({**_row_json(name, row), "payload": row.payload}), indent=None)
        return
    if not rows:
        out.print("No parked messages.")
        return
    table = Table(title=f"{len(rows)} parked message(s)", show_lines=False)
    for column in ("service", "id", "consumer", "event", "attempts", "parked at (UTC)", "reason", "replay"):
        table.add_column(column, overflow="fold")
    for name, row in rows:
        table.add_row(name, str(row.id), row.consumer or "", row.event_name or "?", str(row.attempts),
                      row.received_at.strftime("%Y-%m-%d %H:%M:%S"), row.error,
                      "requested" if row.replay_requested_at else "")
    out.print(table)
    out.print("Fix what the reasons name, then run [bold]evpark events replay[/bold] (--service, --id to choose).")


@events_app.command("replay")
def replay(
    service: Annotated[str | None, typer.Option(help="only this service's parked messages")] = None,
    ids: Annotated[list[int] | None, typer.Option("--id", help="only these parked message ids (repeat)")] = None,
    wait: Annotated[float, typer.Option(help="seconds to wait for the services to deliver them (0: don't wait)",
                                        min=0)] = 60.0,
) -> None:
    """Re-deliver parked messages, once each, to the consumers that parked them."""
    if ids and service is None:
        err.print("[red]evpark events replay: --id needs --service (ids are per service database)[/red]")
        raise typer.Exit(2)
    settings = _settings()
    outcome: dict[str, Any] = _run(_replay(settings, _chosen(service), ids or None, wait))
    delivered, again, waiting = outcome["delivered"], outcome["again"], outcome["waiting"]
    if not outcome["marked"]:
        out.print("No parked messages to replay.")
        return
    out.print(f"[green]{delivered} delivered[/green], {len(again)} parked again, {len(waiting)} still waiting.")
    for name, row in again:
        out.print(f"  [yellow]{name} #{row.id}[/yellow] {row.event_name or '?'}: {row.error}")
    if waiting:
        names = sorted({name for name, _ in waiting})
        out.print(f"[yellow]Not delivered yet: is {', '.join(names)} running? They are delivered when it runs; "
                  "`evpark events parked` shows them meanwhile.[/yellow]")
    if again or waiting:
        raise typer.Exit(1)


async def _replay(settings: CloudSettings, specs: list[ServiceSpec], ids: list[int] | None,
                  wait: float) -> dict[str, Any]:
    async with _stores(settings, specs) as stores:
        marked: dict[str, list[int]] = {}
        for name, store in stores.items():
            chosen = await store.request_replay(ids)
            if chosen:
                marked[name] = chosen
        total = sum(len(v) for v in marked.values())
        again: list[tuple[str, ParkedRow]] = []
        waiting: list[tuple[str, ParkedRow]] = []
        deadline = time.monotonic() + wait
        with Progress(TextColumn("replaying"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=err, transient=True, disable=total == 0) as progress:
            task = progress.add_task("replay", total=total)
            while True:
                again, waiting = [], []
                for name, chosen in marked.items():
                    for row in await stores[name].rows(chosen):
                        (waiting if row.replay_requested_at is not None else again).append((name, row))
                progress.update(task, completed=total - len(waiting))
                if not waiting or time.monotonic() >= deadline:
                    break
                await asyncio.sleep(0.25)
        return {"marked": total, "delivered": total - len(again) - len(waiting), "again": again, "waiting": waiting}
