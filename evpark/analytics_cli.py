"""``evpark analytics rebuild``: compute the analytics rollups again from its event log.

The rollups (``usage_metrics``, ``revenue_metrics``) are sums of what each logged event contributes,
so rebuilding them from ``event_logs`` gives the numbers the running service built as events
arrived. Useful after a fix of a rollup rule, or after a site's time zone changed. On PostgreSQL
the event log is locked for the rebuild's one transaction: events arriving meanwhile wait and are
counted once, after it.
"""

from __future__ import annotations

import asyncio
import time

import typer
from rich.console import Console

analytics_app = typer.Typer(help="Analytics rollups: rebuild them from the event log.", no_args_is_help=True,
                            add_completion=False)
err = Console(stderr=True, soft_wrap=True)  # a path or URL in a message stays whole (copyable)


async def rebuild(database_url: str) -> int:
    """Rebuild the rollups of the analytics database at ``database_url``; the events read."""
    from cloud.analytics import SPEC
    from cloud.analytics.repository import SqlAnalyticsRepository
    from cloud.analytics.service import AnalyticsService
    from cloud.platform.db import Database
    from cloud.platform.outbox import Outbox
    from cloud.platform.unit_of_work import sql_units_of_work

    db = Database(database_url)
    await db.connect()
    try:
        if SPEC.migrations is not None:
            await db.migrate(SPEC.migrations)
        service = AnalyticsService(sql_units_of_work(Outbox(db, source=SPEC.name, publishes=()),
                                                     SqlAnalyticsRepository))
        return await service.rebuild()
    finally:
        await db.close()


@analytics_app.command("rebuild")
def rebuild_command() -> None:
    """Throw the usage and revenue rollups away and compute them again from event_logs."""
    from evpark.cli import _cloud_settings

    settings = _cloud_settings()
    started = time.monotonic()
    try:
        count = asyncio.run(rebuild(settings.database_url_for("analytics")))
    except OSError as exc:
        err.print(f"[red]evpark analytics: cannot reach the database ({exc}); check EVPARK_DATABASE_URL[/red]")
        raise typer.Exit(1) from None
    print(f"analytics rollups rebuilt from {count} logged events in {time.monotonic() - started:.1f} s")
