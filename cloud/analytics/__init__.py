"""Analytics and monitoring: usage, revenue, peak hours, vehicle types and the health of every service
and site, from every domain event (kept in ``event_logs``; rollups rebuildable from it)."""

from pathlib import Path

from cloud.contracts import EventBody, all_models
from cloud.contracts.accounts import EmailVerificationRequested, PasswordResetRequested
from cloud.platform.spec import ServiceSpec

_SECRET = (PasswordResetRequested, EmailVerificationRequested)
"""They carry a single-use link (a credential): never kept in the event log."""
CONSUMED: tuple[type[EventBody], ...] = tuple(m for m in all_models() if m not in _SECRET)

SPEC = ServiceSpec(
    name="analytics",
    port=8107,
    app="cloud.analytics.app:build_app",
    description="Usage, revenue, peak hours, vehicle types and system health, from every domain event.",
    # /metrics/* is analytics' (GET /metrics/health); exactly /metrics stays each service's Prometheus page
    prefixes=("/analytics", "/metrics"),
    migrations=Path(__file__).parent / "migrations",
    consumes=CONSUMED,
)
