"""Notification rules without I/O: quiet hours in the driver's zone, the retry schedule, the webhook
signature with rotating secrets, the idle-fee terms of a tariff, stable ids, template validation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time
from decimal import Decimal

import pytest
from jinja2.exceptions import SecurityError

from cloud.notifications import domain
from cloud.notifications.templates import DEFAULTS, Template, TemplateInvalid, render, validate

NIGHT = domain.QuietHours(time(22, 0), time(7, 0))


@pytest.mark.parametrize("utc, zone, released", [
    (datetime(2026, 3, 10, 22, 30, tzinfo=UTC), "Europe/Berlin", datetime(2026, 3, 11, 6, 0, tzinfo=UTC)),
    (datetime(2026, 3, 10, 20, 30, tzinfo=UTC), "Europe/Berlin", None),  # 21:30 there: not yet quiet
    (datetime(2026, 3, 10, 5, 30, tzinfo=UTC), "Europe/Berlin", datetime(2026, 3, 10, 6, 0, tzinfo=UTC)),
    (datetime(2026, 3, 10, 6, 0, tzinfo=UTC), "Europe/Berlin", None),  # 07:00 there: over
    (datetime(2026, 3, 10, 3, 0, tzinfo=UTC), "America/New_York", datetime(2026, 3, 10, 11, 0, tzinfo=UTC)),
])
def test_quiet_hours_are_in_the_drivers_time_zone(utc: datetime, zone: str, released: datetime | None) -> None:
    assert NIGHT.holds(utc, zone) == released


def test_daytime_quiet_hours_and_an_empty_window() -> None:
    lunch = domain.QuietHours(time(12, 0), time(13, 0))
    assert lunch.holds(datetime(2026, 3, 10, 12, 30, tzinfo=UTC), "UTC") == datetime(2026, 3, 10, 13, tzinfo=UTC)
    assert lunch.holds(datetime(2026, 3, 10, 13, 0, tzinfo=UTC), "UTC") is None
    assert domain.QuietHours(time(9), time(9)).holds(datetime(2026, 3, 10, 9, tzinfo=UTC), "UTC") is None


def test_critical_kinds_are_the_idle_warning_payment_failures_links_and_alerts() -> None:
    assert {"charging.energy_finished", "payment.failed", "account.password_reset_requested",
            "charging.charger_faulted", "parking.site_offline"} <= domain.CRITICAL
    assert "payment.completed" not in domain.CRITICAL and "parking.reserved" not in domain.CRITICAL


def test_eight_attempts_take_about_a_day_jittered() -> None:
    rng = random.Random(7)
    delays = [domain.retry_delay(attempt, 675.0, rng) for attempt in range(1, 8)]  # between the 8 attempts
    assert 0.75 * 675 * 127 <= sum(delays) <= 1.25 * 675 * 127
    assert 18 * 3600 < sum(delays) < 30 * 3600
    assert all(0.75 * 675 * 2 ** i <= d <= 1.25 * 675 * 2 ** i for i, d in enumerate(delays))
    assert len({round(domain.retry_delay(3, 675.0, rng)) for _ in range(20)}) > 1  # jittered


def test_a_signature_verifies_with_any_active_secret_and_not_when_tampered_or_old() -> None:
    body = b'{"id":"n-1"}'
    header = domain.signature(["new", "old"], 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and header.count("v1=") == 2
    assert domain.verify(header, body, "new", 1_700_000_010)
    assert domain.verify(header, body, "old", 1_700_000_010)
    assert not domain.verify(header, body, "other", 1_700_000_010)
    assert not domain.verify(header, body + b" ", "new", 1_700_000_010)
    assert not domain.verify(header, body, "new", 1_700_001_000)  # replayed 1000 s later


def test_the_idle_terms_come_from_the_tariffs_idle_component() -> None:
    tariff = {"elements": [{"components": [{"type": "energy", "price": "0.3"}]},
                           {"components": [{"type": "idle", "price": "0.25", "grace_minutes": 5}]}]}
    assert domain.idle_terms(tariff, "EUR") == domain.IdleTerms(5, Decimal("0.25"), "EUR")
    no_grace = {"elements": [{"components": [{"type": "idle", "price": "0.10"}]}]}
    assert domain.idle_terms(no_grace, "CHF").grace_minutes == domain.DEFAULT_IDLE_GRACE_MINUTES
    assert domain.idle_terms(None, None) == domain.IdleTerms(10, None, None)


def test_a_notification_id_is_stable_per_event_recipient_channel_and_kind() -> None:
    one = domain.notification_id("e-1", "acc-1", "email", "payment.completed")
    assert one == domain.notification_id("e-1", "acc-1", "email", "payment.completed")
    assert len({one, domain.notification_id("e-1", "acc-1", "in_app", "payment.completed"),
                domain.notification_id("e-1", "acc-2", "email", "payment.completed"),
                domain.notification_id("e-2", "acc-1", "email", "payment.completed")}) == 4


def test_every_default_template_is_valid_in_english_and_german() -> None:
    for kind in domain.KINDS:
        for language in domain.LANGUAGES:
            validate(kind, DEFAULTS[(kind, language)])


def test_the_idle_warning_names_the_grace_and_the_rate_in_the_drivers_zone() -> None:
    body = {"site_id": "site-1", "charger_id": "cp-1", "energy_wh": 12_340,
            "energy_finished_at": "2026-03-10T17:00:00+00:00"}
    values = domain.variables("charging.energy_finished", body, "Europe/Berlin",
                              idle=domain.IdleTerms(10, Decimal("0.25"), "EUR")) | {"name": "Ada"}
    text = render(DEFAULTS[("charging.energy_finished", "en")], values).text
    assert text == ("Hello Ada, charging complete (12.34 kWh) — move within 10 minutes or an idle fee of 0.25 EUR/min "
                    "starts at 2026-03-10 18:10 CET.")
    german = render(DEFAULTS[("charging.energy_finished", "de")], values).text
    assert "innerhalb von 10 Minuten" in german and "0.25 EUR/min" in german


def test_html_is_escaped_and_a_sandboxed_template_cannot_reach_python() -> None:
    rendered = render(Template("s", "{{ detail }}"), {"detail": "<script>x</script>"})
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    with pytest.raises(SecurityError):
        render(Template("s", "{{ detail.__class__.__mro__[1].__subclasses__() }}"), {"detail": "x"})


@pytest.mark.parametrize("template, message", [
    (Template("Paid {{ amount", "x"), "subject: line 1:"),
    (Template("Paid", "a\nb\n{{ password }}"), "text: line 3: unknown variable 'password'"),
    (Template("Paid", "ok", "<p>\n{% if %}</p>"), "html: line 2:"),
])
def test_validation_names_the_field_and_the_line(template: Template, message: str) -> None:
    with pytest.raises(TemplateInvalid, match=message.replace("(", r"\(")):
        validate("payment.completed", template)


@pytest.mark.parametrize("url, production, refused", [
    ("https://hooks.example.com/evpark", True, False),
    ("https://203.0.114.9:8443/hook", True, False),
    ("http://[2606:4700::1111]/hook", True, False),
    ("ftp://hooks.example.com/x", False, True),
    ("javascript:alert(1)", False, True),
    ("http:///no-host", False, True),
    ("http://hooks.example.com:99999/", False, True),  # no such port
    ("http://127.0.0.1:9000/hook", False, False),  # embedded: a local receiver is fine
    ("http://127.0.0.1:9000/hook", True, True),
    ("http://[::1]/hook", True, True),
    ("http://169.254.169.254/latest/meta-data", True, True),
    ("http://localhost/hook", True, True),
    ("http://LOCALHOST./hook", True, True),
    ("http://10.0.0.5/hook", True, True),
    ("http://0.0.0.0:8080/", True, True),
    ("http://224.0.0.1/", True, True),
])
def test_webhook_urls_are_http_and_not_internal_in_production(url: str, production: bool, refused: bool) -> None:
    assert (domain.webhook_url_problem(url, production=production) is not None) is refused


@pytest.mark.parametrize("url, named", [
    ("http://127.1/", "127.0.0.1 (a loopback address)"),  # inet_aton's short forms, which getaddrinfo takes too
    ("http://2130706433/", "127.0.0.1 (a loopback address)"),
    ("http://0x7f000001/", "127.0.0.1 (a loopback address)"),
    ("http://0x7F.1:8080/", "127.0.0.1 (a loopback address)"),
    ("http://0177.0.0.1/", "127.0.0.1 (a loopback address)"),
    ("http://127.0.0.1./", "127.0.0.1 (a loopback address)"),
    ("http://0/", "0.0.0.0 (an unspecified address)"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1 (a loopback address)"),  # IPv4-mapped IPv6
    ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254 (a link-local address)"),
    ("http://[fe80::1]/", "fe80::1 (a link-local address)"),
    ("http://[::]/", ":: (an unspecified address)"),
    ("http://[ff02::1]/", "ff02::1 (a multicast address)"),
    ("http://2852039166/", "169.254.169.254 (a link-local address)"),
])
def test_every_numeric_form_of_an_internal_address_is_refused_in_production(url: str, named: str) -> None:
    assert domain.webhook_url_problem(url, production=True) == f"points at {named}"


@pytest.mark.parametrize("host, address", [
    ("127.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f000001", "127.0.0.1"), ("10.1", "10.0.0.1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"), ("hooks.example.com", None), ("deadbeef", None), ("0xcafe.com", None),
    ("1e100.net", None),
])
def test_a_host_is_read_as_an_address_exactly_when_a_resolver_would_read_it_as_one(host: str,
                                                                                   address: str | None) -> None:
    found = domain.numeric_host(host)
    assert (None if found is None else str(found)) == address


def test_an_address_bounces_while_it_is_the_accounts_email() -> None:
    bounce = domain.Bounce("Ada@Example.org", "550 5.1.1 no such user", datetime(2026, 3, 10, tzinfo=UTC))
    assert domain.Recipient("a", "ada@example.org", "Ada", bounce=bounce).bouncing  # addresses compare without case
    assert not domain.Recipient("a", "ada.new@example.org", "Ada", bounce=bounce).bouncing
    assert not domain.Recipient("a", "ada@example.org", "Ada").bouncing
