"""Notification use cases: turn events into notifications (once per event, recipient, channel and kind),
deliver the queue with retries and a dead letter (marking an address that bounces), and answer the inbox,
preferences, the accounts' webhooks, templates and failures."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import structlog

from cloud.contracts import EventBody, Received
from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.identity import ADMIN, OPERATOR, Forbidden, Principal
from cloud.contracts.notifications import NotificationFailed, NotificationSent
from cloud.notifications import domain
from cloud.notifications.channels import Apprise, Bounced, Email, Outgoing, Permanent, Temporary, Webhook
from cloud.notifications.domain import AccountWebhook, InvalidField, Preferences, QuietHours, Recipient
from cloud.notifications.repository import SqlNotificationRepository
from cloud.notifications.settings import NotificationSettings
from cloud.notifications.templates import Rendered, Template, default, render, validate
from cloud.notifications.views import (
    BounceOut,
    CreatedWebhookOut,
    FailedListOut,
    FailedOut,
    InboxOut,
    NotificationOut,
    PreferencesIO,
    QuietHoursIn,
    TemplateIn,
    TemplateOut,
    TemplatesOut,
    WebhookIn,
    WebhookOut,
    WebhooksOut,
)
from cloud.platform.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)
QUEUE = "notifications.events"
DRIVER_EVENTS = frozenset({"charging.started", "charging.completed", "charging.failed", "charging.energy_finished",
                           "parking.reserved", "parking.cancelled", "parking.no_show", "parking.released",
                           "parking.overstay", "payment.completed", "payment.failed", "payment.invoice_issued"})
Uow = UnitOfWork[SqlNotificationRepository]


class NotificationService:
    def __init__(self, units: UnitOfWorkFactory[SqlNotificationRepository], settings: NotificationSettings, *,
                 email: Email, webhook: Webhook, apprise: Apprise | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC), production: bool = False) -> None:
        """``production``: webhook URLs into the cloud's own network are refused (embedded: a local receiver is
        the point)."""
        self._units = units
        self._s = settings
        self._production = production
        self._email, self._webhook, self._apprise = email, webhook, apprise or Apprise()
        self._now = now
        self.wake = asyncio.Event()

    # --- taking events in ----------------------------------------------------------------------

    async def on_event(self, event: Received[EventBody]) -> None:
        body = event.body.model_dump(mode="json")
        name = event.name
        async with self._units() as uow:
            if not await uow.claim(str(event.id), QUEUE):
                return  # a redelivery: everything it caused exists already
            repo = uow.repo
            if name in ("account.registered", "account.updated"):
                await repo.save_recipient(Recipient(
                    body["account_id"], body["email"], body["name"], body.get("language") or "en",
                    body.get("time_zone") or "UTC", tuple(body.get("roles") or ()), tuple(body.get("sites") or ()),
                    bool(body.get("disabled"))))
                return
            if name == "payment.tariff_changed":
                await repo.save_tariff(body["site_id"], body["version"], body["currency"], body["tariff"])
                return
            if name == "parking.cancelled":  # the reminder is withdrawn
                await repo.withdraw("reservation.reminder", f"reservation:{body['reservation_id']}")
            if name in domain.ACCOUNT_LINKS:
                await self._account_link(uow, str(event.id), name, body)
            elif name in domain.OPERATOR_ALERTS:
                await self._operator_alert(uow, str(event.id), name, body)
            elif name in DRIVER_EVENTS:
                await self._driver(uow, str(event.id), name, body)
                if name == "parking.reserved":
                    await self._reminder(uow, body)
        self.wake.set()

    async def _add(self, uow: Uow, *, source: str, kind: str, channel: str, recipient_key: str,
                   account_id: str | None, values: dict[str, Any], site_id: str | None, critical: bool,
                   due_at: datetime | None, target: str | None = None, language: str | None = None,
                   subject_key: str | None = None, rendered: Rendered | None = None,
                   not_before: datetime | None = None) -> None:
        now = self._now()
        nid = domain.notification_id(source, recipient_key, channel, kind)
        in_app = channel == "in_app"
        stored = await uow.repo.add({
            "id": nid, "kind": kind, "channel": channel, "account_id": account_id, "target": target,
            "language": language, "site_id": site_id, "source_event_id": source, "subject_key": subject_key,
            "critical": critical, "variables": values, "title": rendered.subject if rendered else "",
            "body": rendered.text if rendered else "", "state": "sent" if in_app else "pending",
            "attempts": 1 if in_app else 0, "created_at": now, "sent_at": now if in_app else None,
        }, None if in_app else (due_at or now), not_before)
        if stored and in_app:  # exactly once: stored is delivered
            uow.emit(NotificationSent(notification_id=nid, account_id=account_id, channel="in_app", kind=kind,
                                      source_event_id=source, attempts=1, sent_at=now))

    async def _template(self, uow: Uow, kind: str, language: str) -> Template:
        return await uow.repo.template(kind, language) or default(kind, language)

    async def _to_account(self, uow: Uow, source: str, kind: str, account_id: str, body: dict[str, Any],
                          site_id: str | None, *, subject_key: str | None = None,
                          not_before: datetime | None = None) -> None:
        repo = uow.repo
        recipient = await repo.recipient(account_id)
        if recipient is not None and recipient.disabled:
            return
        zone = recipient.time_zone if recipient else "UTC"
        idle = None
        if kind == "charging.energy_finished" and site_id:
            tariff = await repo.tariff(site_id)
            idle = domain.idle_terms(tariff[1] if tariff else None, tariff[0] if tariff else None)
        values = domain.variables(kind, body, zone, idle=idle, reminder_minutes=self._s.reminder_minutes)
        prefs = await repo.preferences(account_id)
        critical = kind in domain.CRITICAL
        now = self._now()
        # (channel, recipient key, target): the driver channels, then each webhook the account registered
        routes: list[tuple[str, str, str | None]] = [(c, account_id, None) for c in domain.DRIVER_CHANNELS]
        if prefs.wants(kind, "webhook"):
            routes += [("webhook", f"hook:{h.webhook_id}", f"hook:{h.webhook_id}")
                       for h in await repo.webhooks_of(account_id)]
        for channel, key, target in routes:
            if not prefs.wants(kind, channel):
                continue
            due = not_before
            rendered = None
            if channel == "in_app":
                if not_before is not None and not_before > now:
                    continue  # a scheduled reminder is an e-mail; in-app shows what has happened
                language = recipient.lang if recipient else "en"
                shown = {**values, "name": recipient.name if recipient else ""}
                try:
                    rendered = render(await self._template(uow, kind, language), shown)
                except Exception:  # an edited template that fails at render: the default says it
                    log.exception("template failed; the default is used", kind=kind, language=language)
                    rendered = render(default(kind, language), shown)
            elif not critical and prefs.quiet_hours is not None:
                held = prefs.quiet_hours.holds(max(now, due or now), zone)
                due = held or due
            await self._add(uow, source=source, kind=kind, channel=channel, recipient_key=key,
                            account_id=account_id, values=values, site_id=site_id, critical=critical, due_at=due,
                            target=target, subject_key=subject_key, rendered=rendered,
                            not_before=max(now, not_before or now))

    async def _driver(self, uow: Uow, source: str, name: str, body: dict[str, Any]) -> None:
        account_id = domain.driver_of(name, body)
        if account_id:
            await self._to_account(uow, source, name, account_id, body, body.get("site_id"))

    async def _reminder(self, uow: Uow, body: dict[str, Any]) -> None:
        starts = datetime.fromisoformat(body["starts_at"])
        at = starts - timedelta(minutes=self._s.reminder_minutes)
        if starts <= self._now():
            return
        await self._to_account(uow, f"reservation:{body['reservation_id']}", "reservation.reminder",
                               body["owner_id"], body, body.get("site_id"), not_before=max(at, self._now()))

    async def _account_link(self, uow: Uow, source: str, name: str, body: dict[str, Any]) -> None:
        recipient = await uow.repo.recipient(body["account_id"])
        zone = recipient.time_zone if recipient else "UTC"
        values = domain.variables(name, body, zone) | {"name": body.get("name") or ""}
        await self._add(uow, source=source, kind=name, channel="email", recipient_key=body["account_id"],
                        account_id=body["account_id"], values=values, site_id=None, critical=True, due_at=None,
                        target=body["email"], language=body.get("language") or "en")

    async def _operator_alert(self, uow: Uow, source: str, name: str, body: dict[str, Any]) -> None:
        key = domain.alert_subject(name, body)
        if await uow.repo.alerted_since(key, self._now() - timedelta(seconds=self._s.debounce_seconds)):
            return  # debounced: a flapping charger is one alert
        site = body.get("site_id")
        for operator in await uow.repo.operators_of(site or ""):
            await self._to_account(uow, source, name, operator.account_id, body, site, subject_key=key)
        values = domain.variables(name, body, "UTC")
        for url in self._s.webhook_urls:
            await self._add(uow, source=source, kind=name, channel="webhook", recipient_key=url, account_id=None,
                            values=values, site_id=site, critical=True, due_at=None, target=url, subject_key=key)
        for index, _ in enumerate(self._s.apprise_urls):
            await self._add(uow, source=source, kind=name, channel="push", recipient_key=f"apprise:{index}",
                            account_id=None, values=values, site_id=site, critical=True, due_at=None,
                            target=f"apprise:{index}", subject_key=key)

    # --- delivery -------------------------------------------------------------------------------

    async def run_delivery(self) -> None:
        """The supervised delivery loop: send what is due, then wait for new work or the next poll."""
        while True:
            if await self.deliver_due() == 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._s.poll_seconds):  # not wait_for: 3.11 can swallow a cancel
                        await self.wake.wait()

    async def deliver_due(self) -> int:
        async with self._units() as uow:
            due = await uow.repo.take_due(self._now(), self._s.lease_seconds, self._s.concurrency)
        # A task group, not gather: cancelled (the service stopping), it waits for each delivery to finish its
        # cleanup; gather returns at once and left them writing to a database about to be closed.
        async with asyncio.TaskGroup() as group:
            for row in due:
                group.create_task(self._deliver(row), name=f"notification:{row['id']}")
        return len(due)

    async def _deliver(self, row: dict[str, Any]) -> None:
        error: str | None = None
        permanent = False
        bounced: Bounced | None = None
        address: str | None = None
        try:
            address = await self._send(row)
        except Bounced as exc:
            error, permanent, bounced = str(exc), True, exc
        except Permanent as exc:
            error, permanent = str(exc), True
        except Temporary as exc:
            error = str(exc)
        except Exception as exc:  # a template that fails at render, a lost database: retried, then dead-lettered
            error = f"{type(exc).__name__}: {exc}"
            log.exception("notification attempt failed", notification_id=row["id"])
        now = self._now()
        attempts = int(row["attempts"])
        facts = {"notification_id": row["id"], "account_id": row["account_id"], "channel": row["channel"],
                 "kind": row["kind"], "source_event_id": row["source_event_id"], "attempts": attempts}
        async with self._units() as uow:
            if error is None:
                await uow.repo.sent(row["id"], now)
                if row["kind"] in domain.ACCOUNT_LINKS:
                    await uow.repo.forget_variables(row["id"])
                if address and row["account_id"]:
                    await uow.repo.clear_bounce(row["account_id"], address)
                uow.emit(NotificationSent(**facts, sent_at=now))
            elif permanent or attempts >= self._s.max_attempts:
                await uow.repo.dead(row["id"], error)
                if bounced is not None and row["account_id"] and await uow.repo.mark_bounce(
                        row["account_id"], bounced.address, bounced.reason, now):
                    log.warning("address marked bouncing", account_id=row["account_id"], reason=bounced.reason)
                uow.emit(NotificationFailed(**facts, reason=error, failed_at=now))
                log.warning("notification dead-lettered", notification_id=row["id"], reason=error)
            else:
                delay = domain.retry_delay(attempts, self._s.retry_base_seconds)
                await uow.repo.retry_at(row["id"], now + timedelta(seconds=delay), error)

    async def _send(self, row: dict[str, Any]) -> str | None:
        """Send one notification; the e-mail address it went to, if it is an e-mail."""
        hook: AccountWebhook | None = None
        async with self._units() as uow:
            recipient = await uow.repo.recipient(row["account_id"]) if row["account_id"] else None
            language = row["language"] or (recipient.lang if recipient else "en")
            template = await self._template(uow, row["kind"], language)
            if row["channel"] == "webhook" and str(row["target"]).startswith("hook:"):
                hook = await uow.repo.webhook(str(row["target"]).removeprefix("hook:"))
                if hook is None:
                    raise Permanent("the webhook was deleted")
        values = {**row["variables"], "name": row["variables"].get("name") or (recipient.name if recipient else "")}
        out = Outgoing(row["id"], row["kind"], render(template, values), row["variables"], row["site_id"],
                       row["created_at"].isoformat())
        if row["channel"] == "email":
            address = row["target"] or (recipient.email if recipient else None)
            if not address:
                raise Temporary("no e-mail address known for the account yet")
            if not row["target"] and recipient is not None and recipient.bouncing and recipient.bounce:
                # a link the person asked for (row["target"]) is still tried: they may have fixed the mailbox
                raise Permanent(f"address bounced: {recipient.bounce.reason}")
            await self._email.send(out, address)
            return str(address)
        if row["channel"] == "webhook":
            if hook is not None:
                await self._webhook.send(out, hook.url, [hook.secret])
            else:
                await self._webhook.send(out, row["target"])
        elif row["channel"] == "push":
            index = int(str(row["target"]).split(":")[1])
            if index >= len(self._s.apprise_urls):
                raise Permanent("the apprise URL is no longer configured")
            await self._apprise.send(out, self._s.apprise_urls[index])
        else:
            raise Permanent(f"no channel {row['channel']!r}")
        return None

    # --- the API --------------------------------------------------------------------------------

    async def inbox(self, user: Principal, *, unread_only: bool, limit: int) -> InboxOut:
        async with self._units() as uow:
            rows, unread = await uow.repo.inbox(user.subject, unread_only=unread_only, limit=limit)
        return InboxOut(unread=unread, items=[NotificationOut.model_validate(r, from_attributes=False) for r in rows])

    async def read(self, user: Principal, notification_id: str) -> NotificationOut:
        async with self._units() as uow:
            row = await uow.repo.get(notification_id)
            if row is None or row["channel"] != "in_app" or row["account_id"] != user.subject:
                raise NotFound(f"notification_id: no notification {notification_id!r} of yours")
            await uow.repo.mark_read(notification_id, self._now())
            row = await uow.repo.get(notification_id)
        assert row is not None
        return NotificationOut.model_validate(row)

    async def preferences(self, user: Principal) -> PreferencesIO:
        async with self._units() as uow:
            prefs = await uow.repo.preferences(user.subject)
            recipient = await uow.repo.recipient(user.subject)
        q = prefs.quiet_hours
        bounce = recipient.bounce if recipient is not None and recipient.bouncing else None
        return PreferencesIO(quiet_hours=QuietHoursIn(start=q.start.strftime("%H:%M"), end=q.end.strftime("%H:%M"))
                             if q else None, channels=prefs.channels,
                             time_zone=recipient.time_zone if recipient else "UTC",
                             email_bounce=BounceOut(address=bounce.address, reason=bounce.reason, since=bounce.at)
                             if bounce else None)

    async def set_preferences(self, user: Principal, given: PreferencesIO) -> PreferencesIO:
        """Replace the preferences; what waits in the queue is timed again by the new quiet hours (hours that no
        longer cover now release it at the next poll)."""
        q = given.quiet_hours
        prefs = Preferences(QuietHours(time.fromisoformat(q.start), time.fromisoformat(q.end)) if q else None,
                            given.channels)
        now = self._now()
        async with self._units() as uow:
            await uow.repo.save_preferences(user.subject, prefs, now)
            recipient = await uow.repo.recipient(user.subject)
            zone = recipient.time_zone if recipient else "UTC"
            for notification_id, not_before in await uow.repo.waiting(user.subject):
                at = max(now, not_before)
                held = prefs.quiet_hours.holds(at, zone) if prefs.quiet_hours else None
                await uow.repo.reschedule(notification_id, held or at)
        self.wake.set()
        return await self.preferences(user)

    async def webhooks(self, user: Principal) -> WebhooksOut:
        async with self._units() as uow:
            hooks = await uow.repo.webhooks_of(user.subject)
        return WebhooksOut(items=[WebhookOut(webhook_id=h.webhook_id, url=h.url, created_at=h.created_at)
                                  for h in hooks])

    async def add_webhook(self, user: Principal, given: WebhookIn) -> CreatedWebhookOut:
        problem = domain.webhook_url_problem(given.url, production=self._production)
        if problem:
            raise InvalidField("url", problem)
        hook = AccountWebhook(str(uuid.uuid4()), user.subject, given.url, "whsec_" + secrets.token_urlsafe(32),
                              self._now())
        async with self._units() as uow:
            if len(await uow.repo.webhooks_of(user.subject)) >= domain.MAX_WEBHOOKS:
                raise Conflict(f"an account has at most {domain.MAX_WEBHOOKS} webhooks: delete one first",
                               code="too_many_webhooks")
            await uow.repo.add_webhook(hook)
        return CreatedWebhookOut(webhook_id=hook.webhook_id, url=hook.url, created_at=hook.created_at,
                                 secret=hook.secret)

    async def delete_webhook(self, user: Principal, webhook_id: str) -> None:
        """What is queued for it fails ("the webhook was deleted") at its next attempt."""
        async with self._units() as uow:
            if not await uow.repo.delete_webhook(webhook_id, user.subject):
                raise NotFound(f"webhook_id: no webhook {webhook_id!r} of yours")

    @staticmethod
    def _admin(user: Principal) -> None:
        if not user.is_admin:
            raise Forbidden(f"templates are edited by {ADMIN}s")

    async def templates(self, user: Principal) -> TemplatesOut:
        self._admin(user)
        async with self._units() as uow:
            custom = await uow.repo.templates()
        items = []
        for kind in domain.KINDS:
            for language in domain.LANGUAGES:
                t = custom.get((kind, language)) or default(kind, language)
                items.append(TemplateOut(kind=kind, language=language,  # type: ignore[arg-type]
                                         subject=t.subject, text=t.text, html=t.html,
                                         variables=sorted(domain.VARIABLES[kind]),
                                         custom=(kind, language) in custom))
        return TemplatesOut(items=items)

    async def set_template(self, user: Principal, kind: str, language: str, given: TemplateIn) -> TemplateOut:
        self._admin(user)
        if kind not in domain.VARIABLES:
            raise NotFound(f"kind: no notification kind {kind!r}")
        if language not in domain.LANGUAGES:
            raise NotFound(f"language: no templates in {language!r} (there are {', '.join(domain.LANGUAGES)})")
        template = Template(given.subject, given.text, given.html)
        validate(kind, template)
        async with self._units() as uow:
            await uow.repo.save_template(kind, language, template, user.subject, self._now())
        return TemplateOut(kind=kind, language=language,  # type: ignore[arg-type]
                           subject=template.subject, text=template.text, html=template.html,
                           variables=sorted(domain.VARIABLES[kind]), custom=True)

    @staticmethod
    def _sees_failures(user: Principal, row: dict[str, Any]) -> bool:
        return user.is_admin or (OPERATOR in user.roles and row["site_id"] in user.sites)

    async def failed(self, user: Principal, limit: int) -> FailedListOut:
        if not (user.is_admin or OPERATOR in user.roles):
            raise Forbidden(f"dead letters are for {OPERATOR}s (their sites) and {ADMIN}s")
        async with self._units() as uow:
            rows = await uow.repo.failed(limit * 4 if not user.is_admin else limit)
        return FailedListOut(items=[FailedOut.model_validate(r) for r in rows if self._sees_failures(user, r)][:limit])

    async def retry(self, user: Principal, notification_id: str) -> FailedOut:
        if not (user.is_admin or OPERATOR in user.roles):
            raise Forbidden(f"dead letters are for {OPERATOR}s (their sites) and {ADMIN}s")
        async with self._units() as uow:
            row = await uow.repo.get(notification_id)
            if row is None or not self._sees_failures(user, row):
                raise NotFound(f"notification_id: no notification {notification_id!r}")
            if row["state"] != "failed":
                raise Conflict(f"notification {notification_id} is {row['state']}, not failed: nothing to retry",
                               code="not_failed")
            await uow.repo.requeue(notification_id, self._now())
            row = await uow.repo.get(notification_id)
        self.wake.set()
        assert row is not None
        return FailedOut.model_validate(row)
