"""The delivery channels: e-mail (SMTP with aiosmtplib, or files in the data directory), signed webhooks
(httpx) and SMS/push (apprise URLs). Each raises :class:`Temporary` (try again later) or :class:`Permanent`
(a bounce: marked, never retried)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx

from cloud.notifications.domain import signature
from cloud.notifications.settings import NotificationSettings
from cloud.notifications.templates import Rendered


class Temporary(Exception):
    """The channel did not take the message now; retried with back-off."""


class Permanent(Exception):
    """The address refused the message for good (a bounce)."""


@dataclass(frozen=True)
class Outgoing:
    notification_id: str
    kind: str
    rendered: Rendered
    variables: dict[str, Any]
    site_id: str | None
    created_at: str


def message_id(notification_id: str, domain: str) -> str:
    return f"<{notification_id}@{domain}>"


def email_message(out: Outgoing, to: str, settings: NotificationSettings) -> EmailMessage:
    message = EmailMessage()
    message["Message-ID"] = message_id(out.notification_id, settings.message_id_domain)
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = out.rendered.subject
    message["Date"] = formatdate(usegmt=True)
    message["X-Evpark-Kind"] = out.kind
    message.set_content(out.rendered.text)
    message.add_alternative(out.rendered.html, subtype="html")
    return message


class Email:
    def __init__(self, settings: NotificationSettings, data_dir: Path) -> None:
        self._settings = settings
        self._folder = data_dir / "mail"

    async def send(self, out: Outgoing, to: str) -> None:
        message = email_message(out, to, self._settings)
        s = self._settings
        if not s.smtp_host:  # embedded: one file per notification (a repeat overwrites the same file)
            self._folder.mkdir(parents=True, exist_ok=True)
            path = self._folder / f"{out.notification_id}.eml"
            partial = path.with_suffix(".part")
            partial.write_bytes(bytes(message))
            os.replace(partial, path)
            return
        try:
            await aiosmtplib.send(
                message, hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username,
                password=s.smtp_password.get_secret_value() if s.smtp_password else None,
                use_tls=s.smtp_security == "tls", start_tls=s.smtp_security == "starttls",
                timeout=s.send_timeout_seconds)
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [e.code for e in error.recipients]
            if codes and all(500 <= c < 600 for c in codes):
                raise Permanent(f"bounced: {error.recipients[0].code} {error.recipients[0].message}") from None
            raise Temporary(str(error)) from None
        except aiosmtplib.SMTPResponseException as error:
            if 550 <= error.code <= 553:
                raise Permanent(f"bounced: {error.code} {error.message}") from None
            raise Temporary(f"{error.code} {error.message}") from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            raise Temporary(f"{type(error).__name__}: {error}") from None


def webhook_body(out: Outgoing) -> bytes:
    return json.dumps({"id": out.notification_id, "type": out.kind, "created_at": out.created_at,
                       "site_id": out.site_id, "subject": out.rendered.subject, "text": out.rendered.text,
                       "data": out.variables}, separators=(",", ":"), sort_keys=True).encode()


class Webhook:
    def __init__(self, settings: NotificationSettings, client: httpx.AsyncClient) -> None:
        self._settings = settings
        self._client = client

    async def send(self, out: Outgoing, url: str) -> None:
        body = webhook_body(out)
        secrets = [s.get_secret_value() for s in self._settings.webhook_secrets]
        headers = {"content-type": "application/json", "Evpark-Event-Id": out.notification_id,
                   "Evpark-Signature": signature(secrets, int(time.time()), body)}
        try:
            answer = await self._client.post(url, content=body, headers=headers,
                                             timeout=self._settings.send_timeout_seconds)
        except httpx.HTTPError as error:
            raise Temporary(f"{type(error).__name__}: {error}") from None
        if answer.status_code == 410:
            raise Permanent("410 Gone: the receiver does not want it")
        if not 200 <= answer.status_code < 300:
            raise Temporary(f"HTTP {answer.status_code}")


class Apprise:
    """SMS and push through apprise URLs (its own notifiers); apprise is synchronous, so it runs in a thread."""

    async def send(self, out: Outgoing, url: str) -> None:
        import apprise

        def notify() -> bool:
            sender = apprise.Apprise()
            if not sender.add(url):
                raise Permanent("not an apprise URL")
            return bool(sender.notify(title=out.rendered.subject, body=out.rendered.text))

        if not await asyncio.to_thread(notify):
            raise Temporary("apprise could not notify")
