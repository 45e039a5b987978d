"""The delivery channels: e-mail (SMTP with aiosmtplib, or files in the data directory), signed webhooks
(httpx) and SMS/push (apprise URLs). Each raises :class:`Temporary` (try again later) or :class:`Permanent`
(never retried); an address the mail server refuses for good is :class:`Bounced`, and marked."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiosmtplib
import httpx

from cloud.notifications.domain import address_problem, numeric_host, signature
from cloud.notifications.settings import NotificationSettings
from cloud.notifications.templates import Rendered


class Temporary(Exception):
    """The channel did not take the message now; retried with back-off."""


class Permanent(Exception):
    """The message can never be delivered (a refused address, a webhook that is gone): not retried."""


class Bounced(Permanent):
    """The mail server refused the recipient for good (5xx at RCPT or DATA): the address is marked."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"bounced: {reason}")
        self.address = address
        self.reason = reason


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
            refused = error.recipients[0] if error.recipients else None
            if refused is not None and 500 <= refused.code < 600:
                raise Bounced(to, f"{refused.code} {refused.message}") from None
            raise Temporary(str(error)) from None
        except (aiosmtplib.SMTPRecipientRefused, aiosmtplib.SMTPDataError) as error:
            # RFC 5321 §4.2.1: 5yz is a permanent negative answer; after RCPT or the data it is about the recipient
            if 500 <= error.code < 600:
                raise Bounced(to, f"{error.code} {error.message}") from None
            raise Temporary(f"{error.code} {error.message}") from None
        except aiosmtplib.SMTPResponseException as error:
            # a refusal at connect, HELO, AUTH or MAIL FROM is about this service's settings, not the address:
            # retried (an operator may fix them), then dead-lettered
            raise Temporary(f"{error.code} {error.message}") from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as error:
            raise Temporary(f"{type(error).__name__}: {error}") from None


def webhook_body(out: Outgoing) -> bytes:
    return json.dumps({"id": out.notification_id, "type": out.kind, "created_at": out.created_at,
                       "site_id": out.site_id, "subject": out.rendered.subject, "text": out.rendered.text,
                       "data": out.variables}, separators=(",", ":"), sort_keys=True).encode()


Resolver = Callable[[str, int], Awaitable[list[str]]]
"""A host and port → the addresses it resolves to (a seam for tests; default: the system's resolver)."""


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class Webhook:
    """A signed POST. The host is resolved here and the request goes to the address checked, never to a
    second lookup (a name may point at 127.0.0.1 by the time it is used); in production an address inside
    the cloud's own network (loopback, link-local, private, …) refuses the delivery for good."""

    TRIED_ADDRESSES = 3

    def __init__(self, settings: NotificationSettings, client: httpx.AsyncClient, *, production: bool = False,
                 resolve: Resolver = system_resolver) -> None:
        self._settings = settings
        self._client = client
        self._production = production
        self._resolve = resolve

    async def send(self, out: Outgoing, url: str, secrets: list[str] | None = None) -> None:
        """``secrets``: the endpoint's own (an account's webhook); default: the deployment's."""
        body = webhook_body(out)
        keys = secrets if secrets is not None else [s.get_secret_value() for s in self._settings.webhook_secrets]
        target = httpx.URL(url)
        addresses = await self._addresses(target)
        headers = {"content-type": "application/json", "Evpark-Event-Id": out.notification_id,
                   "Evpark-Signature": signature(keys, int(time.time()), body), "host": target.netloc.decode()}
        extensions: dict[str, object] = {}
        if target.scheme == "https":
            # the certificate is checked against the name; a fresh connection each time, so a pooled one made for
            # another name at the same address is never reused
            extensions["sni_hostname"] = target.host
            headers["connection"] = "close"
        failure: httpx.HTTPError | None = None
        for address in addresses[:self.TRIED_ADDRESSES]:
            try:
                answer = await self._client.post(target.copy_with(host=address), content=body, headers=headers,
                                                 timeout=self._settings.send_timeout_seconds, extensions=extensions)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                failure = error  # the next address of the name, if it has one
            except httpx.HTTPError as error:
                raise Temporary(f"{type(error).__name__}: {error}") from None
        else:
            raise Temporary(f"{type(failure).__name__}: {failure}")
        if answer.status_code == 410:
            raise Permanent("410 Gone: the receiver does not want it")
        if not 200 <= answer.status_code < 300:
            raise Temporary(f"HTTP {answer.status_code}")

    async def _addresses(self, target: httpx.URL) -> list[str]:
        host = target.host
        given = numeric_host(host)
        if given is not None:
            addresses = [str(given)]
        else:
            try:
                addresses = await self._resolve(host, target.port or (443 if target.scheme == "https" else 80))
            except OSError as error:
                raise Temporary(f"{host} does not resolve: {error}") from None
            if not addresses:
                raise Temporary(f"{host} does not resolve")
        if self._production:
            for address in addresses:
                problem = address_problem(ipaddress.ip_address(address))
                if problem:
                    raise Permanent(f"refused: {host} resolves to {problem}; a webhook may not reach the cloud's "
                                    "own network")
        return addresses


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
