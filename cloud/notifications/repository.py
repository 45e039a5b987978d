"""Notifications, their queue, templates, preferences and the read models ⇄ the tables (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, and_, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from cloud.notifications.domain import AccountWebhook, Bounce, Preferences, QuietHours, Recipient
from cloud.notifications.models import (
    notification_queue,
    notification_recipients,
    notification_tariffs,
    notification_templates,
    notification_webhooks,
    notifications,
    user_preferences,
)
from cloud.notifications.templates import Template
from cloud.platform.outbox import Transaction


class SqlNotificationRepository:
    def __init__(self, tx: Transaction) -> None:
        self._session = tx.session
        self._dialect: Any = sqlite if tx.is_sqlite else postgresql

    def _upsert(self, table: Table, values: dict[str, Any], keys: list[str]) -> Any:
        statement = self._dialect.insert(table).values(**values)
        return statement.on_conflict_do_update(index_elements=keys,
                                               set_={k: v for k, v in values.items() if k not in keys})

    # --- read models ---------------------------------------------------------------------------

    async def save_recipient(self, r: Recipient) -> None:
        """The account's facts; a bounce mark stays while the e-mail is the one that bounced."""
        known = (await self._session.execute(select(notification_recipients.c.email).where(
            notification_recipients.c.account_id == r.account_id))).first()
        values: dict[str, Any] = {
            "account_id": r.account_id, "email": r.email, "name": r.name, "language": r.language,
            "time_zone": r.time_zone, "roles": ",".join(r.roles), "sites": ",".join(r.sites),
            "disabled": r.disabled}
        if known is None or known.email.lower() != r.email.lower():
            values |= {"bounced_email": None, "bounce_reason": None, "bounced_at": None}
        await self._session.execute(self._upsert(notification_recipients, values, ["account_id"]))

    @staticmethod
    def _recipient(row: Any) -> Recipient:
        bounce = Bounce(row.bounced_email, row.bounce_reason or "", row.bounced_at) if row.bounced_email else None
        return Recipient(row.account_id, row.email, row.name, row.language, row.time_zone,
                         tuple(filter(None, row.roles.split(","))), tuple(filter(None, row.sites.split(","))),
                         row.disabled, bounce)

    async def mark_bounce(self, account_id: str, address: str, reason: str, at: datetime) -> bool:
        """Mark the account's e-mail bouncing, if ``address`` is still it; True when marked."""
        r = notification_recipients.c
        done = await self._session.execute(update(notification_recipients).where(and_(
            r.account_id == account_id, func.lower(r.email) == address.lower())).values(
            bounced_email=address, bounce_reason=reason[:2000], bounced_at=at))
        return bool(done.rowcount)  # type: ignore[attr-defined]

    async def clear_bounce(self, account_id: str, address: str) -> None:
        """A message to ``address`` got through: it no longer bounces."""
        r = notification_recipients.c
        await self._session.execute(update(notification_recipients).where(and_(
            r.account_id == account_id, r.bounced_email.is_not(None),
            func.lower(r.bounced_email) == address.lower())).values(
            bounced_email=None, bounce_reason=None, bounced_at=None))

    async def recipient(self, account_id: str) -> Recipient | None:
        row = (await self._session.execute(select(notification_recipients).where(
            notification_recipients.c.account_id == account_id))).first()
        return None if row is None else self._recipient(row)

    async def operators_of(self, site_id: str) -> list[Recipient]:
        rows = (await self._session.execute(select(notification_recipients).where(
            notification_recipients.c.roles.like("%operator%")).order_by(notification_recipients.c.account_id)))
        found = [self._recipient(row) for row in rows]
        return [r for r in found if "operator" in r.roles and site_id in r.sites and not r.disabled]

    async def save_tariff(self, site_id: str, version: int, currency: str, tariff: dict[str, Any]) -> None:
        row = (await self._session.execute(select(notification_tariffs.c.version).where(
            notification_tariffs.c.site_id == site_id))).first()
        if row is not None and row.version >= version:
            return  # an older version arriving late changes nothing
        await self._session.execute(self._upsert(notification_tariffs, {
            "site_id": site_id, "version": version, "currency": currency, "tariff": json.dumps(tariff)}, ["site_id"]))

    async def tariff(self, site_id: str) -> tuple[str, dict[str, Any]] | None:
        row = (await self._session.execute(select(notification_tariffs).where(
            notification_tariffs.c.site_id == site_id))).first()
        return None if row is None else (row.currency, json.loads(row.tariff))

    # --- preferences and templates -------------------------------------------------------------

    async def preferences(self, account_id: str) -> Preferences:
        row = (await self._session.execute(select(user_preferences).where(
            user_preferences.c.account_id == account_id))).first()
        if row is None:
            return Preferences()
        quiet = (QuietHours(time.fromisoformat(row.quiet_start), time.fromisoformat(row.quiet_end))
                 if row.quiet_start and row.quiet_end else None)
        return Preferences(quiet, json.loads(row.channels))

    async def save_preferences(self, account_id: str, p: Preferences, at: datetime) -> None:
        q = p.quiet_hours
        await self._session.execute(self._upsert(user_preferences, {
            "account_id": account_id, "quiet_start": q.start.strftime("%H:%M") if q else None,
            "quiet_end": q.end.strftime("%H:%M") if q else None, "channels": json.dumps(p.channels, sort_keys=True),
            "updated_at": at}, ["account_id"]))

    async def template(self, kind: str, language: str) -> Template | None:
        row = (await self._session.execute(select(notification_templates).where(and_(
            notification_templates.c.kind == kind, notification_templates.c.language == language)))).first()
        return None if row is None else Template(row.subject, row.text, row.html)

    async def save_template(self, kind: str, language: str, t: Template, by: str, at: datetime) -> None:
        await self._session.execute(self._upsert(notification_templates, {
            "kind": kind, "language": language, "subject": t.subject, "text": t.text, "html": t.html,
            "updated_at": at, "updated_by": by}, ["kind", "language"]))

    async def templates(self) -> dict[tuple[str, str], Template]:
        rows = await self._session.execute(select(notification_templates))
        return {(r.kind, r.language): Template(r.subject, r.text, r.html) for r in rows}

    # --- notifications and the queue -----------------------------------------------------------

    async def add(self, values: dict[str, Any], due_at: datetime | None, not_before: datetime | None = None) -> bool:
        """Store a notification (and queue it when ``due_at``: quiet hours may make that later than
        ``not_before``, the time it is for); False when it exists already."""
        values = {**values, "variables": json.dumps(values["variables"], sort_keys=True)}
        inserted = await self._session.execute(
            self._dialect.insert(notifications).values(**values).on_conflict_do_nothing())
        if not inserted.rowcount:  # type: ignore[attr-defined]
            return False
        if due_at is not None:
            await self._session.execute(notification_queue.insert().values(
                notification_id=values["id"], due_at=due_at, lease_until=None, not_before=not_before or due_at))
        return True

    async def waiting(self, account_id: str) -> list[tuple[str, datetime]]:
        """The account's queued non-critical messages not tried yet (held by quiet hours, or scheduled), with
        the time each is for."""
        q, n = notification_queue.c, notifications.c
        rows = await self._session.execute(select(q.notification_id, q.not_before, q.due_at).join(
            notifications, n.id == q.notification_id).where(and_(
                n.account_id == account_id, n.critical.is_(False), n.attempts == 0, q.lease_until.is_(None))))
        return [(r.notification_id, r.not_before or r.due_at) for r in rows]

    async def reschedule(self, notification_id: str, due_at: datetime) -> None:
        q = notification_queue.c
        await self._session.execute(update(notification_queue).where(and_(
            q.notification_id == notification_id, q.lease_until.is_(None))).values(due_at=due_at))

    async def alerted_since(self, subject_key: str, since: datetime) -> bool:
        row = (await self._session.execute(select(notifications.c.id).where(and_(
            notifications.c.subject_key == subject_key, notifications.c.created_at >= since)).limit(1))).first()
        return row is not None

    async def withdraw(self, kind: str, source_event_id: str) -> int:
        ids = [r.id for r in await self._session.execute(select(notifications.c.id).where(and_(
            notifications.c.kind == kind, notifications.c.source_event_id == source_event_id,
            notifications.c.state == "pending")))]
        if ids:
            await self._session.execute(delete(notification_queue).where(notification_queue.c.notification_id.in_(ids)))
            await self._session.execute(update(notifications).where(notifications.c.id.in_(ids)).values(
                state="withdrawn"))
        return len(ids)

    async def take_due(self, now: datetime, lease_s: float, limit: int) -> list[dict[str, Any]]:
        """Lease the notifications due now (one attempt each); a lapsed lease (a crash) is due again."""
        q = notification_queue.c
        statement = select(q.notification_id).where(and_(q.due_at <= now, or_(
            q.lease_until.is_(None), q.lease_until < now))).order_by(q.due_at).limit(limit)
        if self._dialect is postgresql:
            statement = statement.with_for_update(skip_locked=True)
        ids = [r.notification_id for r in await self._session.execute(statement)]
        if not ids:
            return []
        await self._session.execute(update(notification_queue).where(q.notification_id.in_(ids)).values(
            lease_until=now + timedelta(seconds=lease_s)))
        await self._session.execute(update(notifications).where(notifications.c.id.in_(ids)).values(
            attempts=notifications.c.attempts + 1))
        rows = await self._session.execute(select(notifications).where(notifications.c.id.in_(ids)))
        return [{**r._asdict(), "variables": json.loads(r.variables)} for r in rows]

    async def sent(self, notification_id: str, at: datetime) -> None:
        await self._session.execute(delete(notification_queue).where(
            notification_queue.c.notification_id == notification_id))
        await self._session.execute(update(notifications).where(notifications.c.id == notification_id).values(
            state="sent", sent_at=at, last_error=None))

    async def forget_variables(self, notification_id: str) -> None:
        """After a single-use link went out: the link (a credential) is not kept."""
        await self._session.execute(update(notifications).where(notifications.c.id == notification_id).values(
            variables="{}"))

    async def retry_at(self, notification_id: str, due_at: datetime, error: str) -> None:
        await self._session.execute(update(notification_queue).where(
            notification_queue.c.notification_id == notification_id).values(due_at=due_at, lease_until=None))
        await self._session.execute(update(notifications).where(notifications.c.id == notification_id).values(
            last_error=error[:2000]))

    async def dead(self, notification_id: str, error: str) -> None:
        await self._session.execute(delete(notification_queue).where(
            notification_queue.c.notification_id == notification_id))
        await self._session.execute(update(notifications).where(notifications.c.id == notification_id).values(
            state="failed", last_error=error[:2000]))

    async def get(self, notification_id: str) -> dict[str, Any] | None:
        row = (await self._session.execute(select(notifications).where(notifications.c.id == notification_id))).first()
        return None if row is None else {**row._asdict(), "variables": json.loads(row.variables)}

    async def requeue(self, notification_id: str, now: datetime) -> None:
        await self._session.execute(update(notifications).where(notifications.c.id == notification_id).values(
            state="pending", attempts=0))
        await self._session.execute(notification_queue.insert().values(
            notification_id=notification_id, due_at=now, lease_until=None, not_before=now))

    async def inbox(self, account_id: str, *, unread_only: bool, limit: int) -> tuple[list[dict[str, Any]], int]:
        n = notifications.c
        mine = and_(n.account_id == account_id, n.channel == "in_app")
        statement = select(notifications).where(mine)
        if unread_only:
            statement = statement.where(n.read_at.is_(None))
        rows = await self._session.execute(statement.order_by(n.created_at.desc(), n.id).limit(limit))
        unread = (await self._session.execute(select(func.count()).select_from(notifications).where(
            and_(mine, n.read_at.is_(None))))).scalar_one()
        return [r._asdict() for r in rows], int(unread)

    async def mark_read(self, notification_id: str, at: datetime) -> None:
        await self._session.execute(update(notifications).where(and_(
            notifications.c.id == notification_id, notifications.c.read_at.is_(None))).values(read_at=at))

    async def failed(self, limit: int) -> list[dict[str, Any]]:
        rows = await self._session.execute(select(notifications).where(notifications.c.state == "failed").order_by(
            notifications.c.created_at.desc()).limit(limit))
        return [r._asdict() for r in rows]

    async def count(self, **where: Any) -> int:
        statement = select(func.count()).select_from(notifications)
        for key, value in where.items():
            statement = statement.where(notifications.c[key] == value)
        return int((await self._session.execute(statement)).scalar_one())

    # --- webhooks of accounts ------------------------------------------------------------------

    @staticmethod
    def _webhook(row: Any) -> AccountWebhook:
        return AccountWebhook(row.webhook_id, row.account_id, row.url, row.secret, row.created_at)

    async def webhooks_of(self, account_id: str) -> list[AccountWebhook]:
        w = notification_webhooks.c
        rows = await self._session.execute(select(notification_webhooks).where(w.account_id == account_id).order_by(
            w.created_at, w.webhook_id))
        return [self._webhook(r) for r in rows]

    async def webhook(self, webhook_id: str) -> AccountWebhook | None:
        row = (await self._session.execute(select(notification_webhooks).where(
            notification_webhooks.c.webhook_id == webhook_id))).first()
        return None if row is None else self._webhook(row)

    async def add_webhook(self, hook: AccountWebhook) -> None:
        await self._session.execute(notification_webhooks.insert().values(
            webhook_id=hook.webhook_id, account_id=hook.account_id, url=hook.url, secret=hook.secret,
            created_at=hook.created_at))

    async def delete_webhook(self, webhook_id: str, account_id: str) -> bool:
        w = notification_webhooks.c
        done = await self._session.execute(delete(notification_webhooks).where(and_(
            w.webhook_id == webhook_id, w.account_id == account_id)))
        return bool(done.rowcount)  # type: ignore[attr-defined]
