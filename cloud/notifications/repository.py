"""Notifications, their queue, templates, preferences and the read models ⇄ the tables (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from functools import cache
from typing import Any

from sqlalchemy import String, Table, and_, bindparam, cast, delete, exists, func, or_, select, update
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

# The statements of the hot paths (an event taken in, a notification delivered), built once with bound parameters:
# building a statement and computing its cache key cost about as much as running it.
_r, _p, _t, _w = notification_recipients, user_preferences, notification_templates, notification_webhooks
_q, _n = notification_queue.c, notifications.c
_key = select(cast(bindparam("account_id", type_=String), String).label("key")).subquery("k")
_AUDIENCE = select(
    *_r.c, _p.c.quiet_start, _p.c.quiet_end, _p.c.channels, _t.c.language.label("t_language"),
    _t.c.subject.label("t_subject"), _t.c.text.label("t_text"), _t.c.html.label("t_html"),
    exists().where(_w.c.account_id == bindparam("account_id", type_=String)).label("hooked"),
).select_from(_key.outerjoin(_r, _r.c.account_id == _key.c.key).outerjoin(
    _p, _p.c.account_id == _key.c.key).outerjoin(_t, _t.c.kind == bindparam("kind", type_=String)))
_RECIPIENTS = select(_r).where(_r.c.account_id.in_(bindparam("ids", expanding=True)))
_TEMPLATES_OF = select(_t).where(_t.c.kind.in_(bindparam("kinds", expanding=True)))
_WEBHOOKS = select(_w).where(_w.c.webhook_id.in_(bindparam("ids", expanding=True)))
_TARIFF = select(notification_tariffs).where(notification_tariffs.c.site_id == bindparam("site_id"))
_QUEUE = notification_queue.insert()
_ATTEMPT = update(notifications).where(_n.id.in_(bindparam("ids", expanding=True))).values(
    attempts=_n.attempts + 1).returning(*notifications.c)
_UNQUEUE = delete(notification_queue).where(_q.notification_id == bindparam("nid"))
_SENT = update(notifications).where(_n.id == bindparam("nid")).values(
    state="sent", sent_at=bindparam("at"), last_error=None)
_SENT_FORGOTTEN = update(notifications).where(_n.id == bindparam("nid")).values(
    state="sent", sent_at=bindparam("at"), last_error=None, variables="{}")
_RETRY = update(notification_queue).where(_q.notification_id == bindparam("nid")).values(
    due_at=bindparam("due"), lease_until=None)
_ERROR = update(notifications).where(_n.id == bindparam("nid")).values(last_error=bindparam("error"))
_FAILED = update(notifications).where(_n.id == bindparam("nid")).values(state="failed", last_error=bindparam("error"))
_CLEAR_BOUNCE = update(notification_recipients).where(and_(
    _r.c.account_id == bindparam("b_account_id"), _r.c.bounced_email.is_not(None),
    func.lower(_r.c.bounced_email) == bindparam("address"))).values(
    bounced_email=None, bounce_reason=None, bounced_at=None)


@cache
def _add_statement(dialect: Any) -> Any:
    return dialect.insert(notifications).on_conflict_do_nothing().returning(_n.id)


@cache
def _lease_statement(dialect: Any, limit: int) -> Any:
    """Lease what is due (UPDATE … WHERE id IN (the first ``limit`` due) RETURNING): one statement."""
    due = select(_q.notification_id).where(and_(_q.due_at <= bindparam("now"), or_(
        _q.lease_until.is_(None), _q.lease_until < bindparam("now")))).order_by(_q.due_at).limit(limit)
    if dialect is postgresql:
        due = due.with_for_update(skip_locked=True)
    return update(notification_queue).where(_q.notification_id.in_(due.scalar_subquery())).values(
        lease_until=bindparam("lease")).returning(_q.notification_id, _q.due_at)


@dataclass(frozen=True)
class Audience:
    """What notifying an account of one kind needs, read in one statement: the account's facts, its preferences,
    whether it registered webhooks, and the custom templates of the kind (by language)."""

    recipient: Recipient | None
    preferences: Preferences
    has_webhooks: bool
    templates: dict[str, Template] = field(default_factory=dict)


@dataclass(frozen=True)
class DeliveryContext:
    """What sending a batch of leased notifications reads, in the transaction that leased them."""

    recipients: dict[str, Recipient] = field(default_factory=dict)
    templates: dict[tuple[str, str], Template] = field(default_factory=dict)
    webhooks: dict[str, AccountWebhook] = field(default_factory=dict)


def _preferences(quiet_start: str | None, quiet_end: str | None, channels: str) -> Preferences:
    quiet = (QuietHours(time.fromisoformat(quiet_start), time.fromisoformat(quiet_end))
             if quiet_start and quiet_end else None)
    return Preferences(quiet, json.loads(channels))


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
        await self._session.execute(_CLEAR_BOUNCE, {"b_account_id": account_id, "address": address.lower()})

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
        row = (await self._session.execute(_TARIFF, {"site_id": site_id})).first()
        return None if row is None else (row.currency, json.loads(row.tariff))

    # --- preferences and templates -------------------------------------------------------------

    async def preferences(self, account_id: str) -> Preferences:
        row = (await self._session.execute(select(user_preferences).where(
            user_preferences.c.account_id == account_id))).first()
        return Preferences() if row is None else _preferences(row.quiet_start, row.quiet_end, row.channels)

    async def audience(self, account_id: str, kind: str) -> Audience:
        """:meth:`recipient`, :meth:`preferences`, whether :meth:`webhooks_of` has any, and :meth:`template` of
        ``kind`` in each language, in one statement: the account's key left-joined to each."""
        rows = (await self._session.execute(_AUDIENCE, {"account_id": account_id, "kind": kind})).all()
        first = rows[0]
        return Audience(
            None if first.account_id is None else self._recipient(first),
            Preferences() if first.channels is None else _preferences(first.quiet_start, first.quiet_end,
                                                                      first.channels),
            bool(first.hooked),
            {row.t_language: Template(row.t_subject, row.t_text, row.t_html) for row in rows
             if row.t_language is not None})

    async def delivery_context(self, rows: list[dict[str, Any]]) -> DeliveryContext:
        """The recipients, custom templates and account webhooks that sending ``rows`` needs."""
        accounts = sorted({str(row["account_id"]) for row in rows if row["account_id"]})
        kinds = sorted({str(row["kind"]) for row in rows})
        hooks = sorted({str(row["target"]).removeprefix("hook:") for row in rows
                        if row["channel"] == "webhook" and str(row["target"]).startswith("hook:")})
        context = DeliveryContext()
        if accounts:
            found = await self._session.execute(_RECIPIENTS, {"ids": accounts})
            context.recipients.update((row.account_id, self._recipient(row)) for row in found)
        found = await self._session.execute(_TEMPLATES_OF, {"kinds": kinds})
        context.templates.update(((r.kind, r.language), Template(r.subject, r.text, r.html)) for r in found)
        if hooks:
            found = await self._session.execute(_WEBHOOKS, {"ids": hooks})
            context.webhooks.update((row.webhook_id, self._webhook(row)) for row in found)
        return context

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

    async def templates(self, kinds: Collection[str] | None = None) -> dict[tuple[str, str], Template]:
        """The custom templates (of ``kinds``, when given)."""
        statement = select(notification_templates)
        if kinds is not None:
            statement = statement.where(notification_templates.c.kind.in_(kinds))
        rows = await self._session.execute(statement)
        return {(r.kind, r.language): Template(r.subject, r.text, r.html) for r in rows}

    # --- notifications and the queue -----------------------------------------------------------

    async def add(self, values: dict[str, Any], due_at: datetime | None, not_before: datetime | None = None) -> bool:
        """Store a notification (and queue it when ``due_at``: quiet hours may make that later than
        ``not_before``, the time it is for); False when it exists already."""
        return bool(await self.add_many([(values, due_at, not_before)]))

    async def add_many(self, items: list[tuple[dict[str, Any], datetime | None, datetime | None]]) -> set[str]:
        """:meth:`add` for several notifications (each ``(values, due_at, not_before)``, the same columns in
        each), in two statements: the ids stored, those that existed already left out."""
        if not items:
            return set()
        rows = [{**values, "variables": json.dumps(values["variables"], sort_keys=True)} for values, _, _ in items]
        # A list of rows: sent as one multi-row INSERT … ON CONFLICT DO NOTHING RETURNING ("insertmanyvalues")
        stored = set((await self._session.execute(_add_statement(self._dialect), rows)).scalars())
        queued = [{"notification_id": values["id"], "due_at": due_at, "lease_until": None,
                   "not_before": not_before or due_at}
                  for values, due_at, not_before in items if due_at is not None and values["id"] in stored]
        if queued:
            await self._session.execute(_QUEUE, queued)
        return stored

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
        # one statement for the lease, one for the attempt
        leased = (await self._session.execute(_lease_statement(self._dialect, limit), {
            "now": now, "lease": now + timedelta(seconds=lease_s)})).all()
        if not leased:
            return []
        order = {r.notification_id: (r.due_at, r.notification_id) for r in leased}
        rows = (await self._session.execute(_ATTEMPT, {"ids": list(order)})).all()
        return [{**r._asdict(), "variables": json.loads(r.variables)} for r in sorted(rows, key=lambda r: order[r.id])]

    async def sent(self, notification_id: str, at: datetime, *, forget_variables: bool = False) -> None:
        """``forget_variables``: :meth:`forget_variables` in the same statement."""
        await self._session.execute(_UNQUEUE, {"nid": notification_id})
        await self._session.execute(_SENT_FORGOTTEN if forget_variables else _SENT, {"nid": notification_id, "at": at})

    async def forget_variables(self, notification_id: str) -> None:
        """After a single-use link went out: the link (a credential) is not kept."""
        await self._session.execute(update(notifications).where(notifications.c.id == notification_id).values(
            variables="{}"))

    async def retry_at(self, notification_id: str, due_at: datetime, error: str) -> None:
        await self._session.execute(_RETRY, {"nid": notification_id, "due": due_at})
        await self._session.execute(_ERROR, {"nid": notification_id, "error": error[:2000]})

    async def dead(self, notification_id: str, error: str) -> None:
        await self._session.execute(_UNQUEUE, {"nid": notification_id})
        await self._session.execute(_FAILED, {"nid": notification_id, "error": error[:2000]})

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
