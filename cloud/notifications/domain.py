"""Notification rules, free of I/O: who hears about an event on which channel, what is critical,
quiet hours in the recipient's time zone, the retry schedule, the webhook signature, the webhook
addresses refused in production, a bounced address, and the idle-fee terms of a tariff."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import re
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cloud.contracts.errors import DomainError

DRIVER_CHANNELS = ("in_app", "email")
CHANNELS = ("email", "webhook", "in_app", "sms", "push")
LANGUAGES = ("en", "de")
DEFAULT_IDLE_GRACE_MINUTES = 10  # GLOSSARY: idle-fee grace after energy finished

OPERATOR_ALERTS = frozenset({"charging.charger_faulted", "charging.charger_offline", "parking.site_offline",
                             "charging.anomaly"})
ACCOUNT_LINKS = frozenset({"account.password_reset_requested", "account.email_verification_requested"})
CRITICAL = frozenset({"charging.energy_finished", "payment.failed"}) | ACCOUNT_LINKS | OPERATOR_ALERTS
"""They bypass quiet hours."""

COMMON = frozenset({"name", "site_id"})
VARIABLES: dict[str, frozenset[str]] = {
    "charging.started": COMMON | {"charger_id", "started_at"},
    "charging.completed": COMMON | {"charger_id", "energy_kwh", "stopped_at"},
    "charging.failed": COMMON | {"charger_id", "reason", "detail"},
    "charging.energy_finished": COMMON | {"charger_id", "energy_kwh", "grace_minutes", "idle_rate", "currency",
                                          "idle_starts_at"},
    "parking.reserved": COMMON | {"bay_id", "starts_at", "ends_at"},
    "reservation.reminder": COMMON | {"bay_id", "starts_at", "minutes"},
    "parking.cancelled": COMMON | {"bay_id", "starts_at"},
    "parking.no_show": COMMON | {"bay_id", "starts_at"},
    "parking.released": COMMON | {"bay_id", "duration_minutes"},
    "parking.overstay": COMMON | {"bay_id", "limit_at"},
    "payment.completed": COMMON | {"amount", "currency"},
    "payment.failed": COMMON | {"amount", "currency", "reason"},
    "payment.invoice_issued": COMMON | {"number", "total", "currency"},
    "account.password_reset_requested": COMMON | {"url", "expires_at"},
    "account.email_verification_requested": COMMON | {"url", "expires_at"},
    "charging.charger_faulted": COMMON | {"charger_id", "error_code"},
    "charging.charger_offline": COMMON | {"charger_id", "since"},
    "parking.site_offline": COMMON | {"reason", "since"},
    "charging.anomaly": COMMON | {"charger_id", "anomaly", "detail"},
}
"""The variables a template of each kind may use (anything else is refused on save)."""
KINDS = tuple(VARIABLES)

_IDS = uuid.UUID("6f1c1a52-8f0e-4c55-9a56-2c1f0c0b7e19")


def notification_id(source: str, recipient: str, channel: str, kind: str) -> str:
    """Stable: the same (event, recipient, channel, kind) is always the same notification (and Message-ID)."""
    return str(uuid.uuid5(_IDS, f"{source}|{recipient}|{channel}|{kind}"))


@dataclass(frozen=True)
class Bounce:
    """The mail server refused an account's address for good."""

    address: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class Recipient:
    account_id: str
    email: str
    name: str
    language: str = "en"
    time_zone: str = "UTC"
    roles: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    disabled: bool = False
    bounce: Bounce | None = None

    @property
    def lang(self) -> str:
        base = self.language.split("-")[0].lower()
        return base if base in LANGUAGES else "en"

    @property
    def bouncing(self) -> bool:
        """Its address bounced: no e-mail is tried until it changes (or a requested link to it gets through)."""
        return self.bounce is not None and self.bounce.address.lower() == self.email.lower()


@dataclass(frozen=True)
class AccountWebhook:
    """An endpoint an account registered: its notifications (the kinds it has the webhook channel on for),
    signed with the endpoint's own secret."""

    webhook_id: str
    account_id: str
    url: str
    secret: str
    created_at: datetime


class InvalidField(DomainError):
    """A request field breaks a rule: a 422 naming ``field``."""

    title = "Invalid request"

    def __init__(self, field_name: str, detail: str) -> None:
        super().__init__(f"{field_name}: {detail}", code="invalid_field")
        self.field = field_name
        self.message = detail


@dataclass(frozen=True)
class QuietHours:
    start: time
    end: time

    def holds(self, at: datetime, zone: str) -> datetime | None:
        """When a non-critical message created ``at`` may go out: None now, else the end of the quiet hours."""
        local = at.astimezone(tz(zone))
        now = local.time()
        inside = (self.start <= now < self.end) if self.start < self.end else (now >= self.start or now < self.end)
        if not inside or self.start == self.end:
            return None
        end = local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(at.tzinfo)


@dataclass(frozen=True)
class Preferences:
    quiet_hours: QuietHours | None = None
    channels: dict[str, dict[str, bool]] = field(default_factory=dict)
    """kind -> channel -> on/off; absent: on."""

    def wants(self, kind: str, channel: str) -> bool:
        return self.channels.get(kind, {}).get(channel, True)


def tz(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def retry_delay(attempt: int, base_s: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempt + 1``: base·2^(attempt-1), times a random factor in [0.75, 1.25]."""
    factor = (rng or random).uniform(0.75, 1.25)
    return base_s * (2 ** (attempt - 1)) * factor


def signature(secrets: list[str], timestamp: int, body: bytes) -> str:
    """The ``Evpark-Signature`` header: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`` per active secret."""
    signed = f"{timestamp}.".encode() + body
    return ",".join([f"t={timestamp}"] + [
        "v1=" + hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets])


def verify(header: str, body: bytes, secret: str, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does (the README's snippet): any v1 matches, and the timestamp is recent."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k == "t"]
    if not stamps or not stamps[0].isdigit() or abs(now - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{stamps[0]}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, v) for k, v in parts if k == "v1")


@dataclass(frozen=True)
class IdleTerms:
    grace_minutes: int
    rate: Decimal | None
    currency: str | None


def idle_terms(tariff: dict[str, Any] | None, currency: str | None) -> IdleTerms:
    """The first idle component of the tariff (its price per minute and grace); the glossary's grace if none."""
    for element in (tariff or {}).get("elements", []):
        for component in element.get("components", []):
            if component.get("type") == "idle":
                grace = component.get("grace_minutes")
                return IdleTerms(DEFAULT_IDLE_GRACE_MINUTES if grace is None else int(grace),
                                 Decimal(str(component["price"])), currency)
    return IdleTerms(DEFAULT_IDLE_GRACE_MINUTES, None, currency)


def shown(at: datetime | str | None, zone: str) -> str:
    """A time as the recipient reads it: in their time zone, to the minute."""
    if at is None:
        return ""
    value = datetime.fromisoformat(at) if isinstance(at, str) else at
    return value.astimezone(tz(zone)).strftime("%Y-%m-%d %H:%M %Z")


def kwh(wh: int | None) -> str:
    return f"{Decimal(wh or 0) / 1000:.2f}"


def driver_of(name: str, body: dict[str, Any]) -> str | None:
    """The account a driver event is for."""
    if name.startswith("payment."):
        return body.get("account_id")
    return body.get("owner_id")


def alert_subject(name: str, body: dict[str, Any]) -> str:
    """What a debounced operator alert is about: one per kind and charger (or site)."""
    return f"{name}:{body.get('site_id')}:{body.get('charger_id') or ''}"


def variables(name: str, body: dict[str, Any], zone: str, *, idle: IdleTerms | None = None,
              reminder_minutes: int = 15) -> dict[str, Any]:
    """The template variables of a kind, from the event (times in ``zone``)."""
    b = body
    v: dict[str, Any] = {"site_id": b.get("site_id") or ""}
    for key in ("charger_id", "bay_id", "reason", "detail", "error_code", "currency", "number", "url"):
        if key in VARIABLES[name]:
            v[key] = b.get(key) or ""
    for key in ("started_at", "stopped_at", "starts_at", "ends_at", "limit_at", "since", "expires_at"):
        if key in VARIABLES[name]:
            v[key] = shown(b.get(key), zone)
    if "energy_kwh" in VARIABLES[name]:
        v["energy_kwh"] = kwh(b.get("energy_wh"))
    if "amount" in VARIABLES[name]:
        v["amount"] = str(b.get("amount"))
    if "total" in VARIABLES[name]:
        v["total"] = str(b.get("total"))
    if name == "parking.released":
        v["duration_minutes"] = int(b.get("duration_s") or 0) // 60
    if name == "charging.anomaly":
        v["anomaly"] = b.get("kind") or ""
    if name == "reservation.reminder":
        v["minutes"] = reminder_minutes
    if name == "charging.energy_finished":
        terms = idle or IdleTerms(DEFAULT_IDLE_GRACE_MINUTES, None, None)
        v["grace_minutes"] = terms.grace_minutes
        v["idle_rate"] = "" if terms.rate is None else str(terms.rate)
        v["currency"] = terms.currency or ""
        finished = datetime.fromisoformat(b["energy_finished_at"]) if isinstance(
            b.get("energy_finished_at"), str) else b.get("energy_finished_at")
        v["idle_starts_at"] = shown(finished + timedelta(minutes=terms.grace_minutes) if finished else None, zone)
    return v


MAX_WEBHOOKS = 5
"""Webhooks one account may register (``POST /notifications/webhooks``)."""

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def numeric_host(host: str) -> Address | None:
    """The address a host names by itself, in any form a resolver takes as a number, or None for a name:
    ``127.0.0.1``, and the legacy IPv4 forms ``127.1``, ``2130706433``, ``0x7f000001``, ``0177.0.0.1``
    (``inet_aton``'s, which ``getaddrinfo`` also accepts), IPv6 (with a zone)."""
    host = host.rstrip(".").lower()
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def address_problem(address: Address) -> str | None:
    """Why a webhook may not be sent to ``address`` in production, or None: loopback, link-local, unspecified,
    multicast, private-use or reserved (an IPv4-mapped IPv6 address counts as its IPv4 one) — no requests into
    the cloud's own network or its metadata service."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for what, refused in (("loopback", address.is_loopback), ("link-local", address.is_link_local),
                          ("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
                          ("private", address.is_private), ("reserved", address.is_reserved),
                          ("non-global", not address.is_global)):
        if refused:
            return f"{address} ({'an' if what[0] in 'aeiou' else 'a'} {what} address)"
    return None


def webhook_url_problem(url: str, *, production: bool) -> str | None:
    """Why a webhook URL is refused, or None: not an http(s) URL with a host; in production also a host that is
    this one (``localhost``) or an address :func:`address_problem` refuses, in any numeric form. A name is
    checked again when it is resolved, at each delivery (it may point elsewhere by then)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if not production:
        return None  # embedded (tests, `evpark up`): a receiver on this machine is the point
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "points at this host (localhost)"
    address = numeric_host(host)
    problem = address_problem(address) if address is not None else None
    return f"points at {problem}" if problem else None
