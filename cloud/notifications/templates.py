"""Message templates (jinja2, sandboxed) per kind and language, with the defaults in English and German,
validated on save: a syntax error or an unknown variable is refused naming its line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from cloud.contracts.errors import DomainError
from cloud.notifications.domain import VARIABLES

_TEXT = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_HTML = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)


@dataclass(frozen=True)
class Template:
    subject: str
    text: str
    html: str | None = None
    """None: the text, escaped, in paragraphs."""


E = "charging.energy_finished"
DEFAULTS: dict[tuple[str, str], Template] = {
    ("charging.started", "en"): Template("Charging started", "Hello {{ name }}, charging started at {{ charger_id }} "
                                         "({{ started_at }})."),
    ("charging.started", "de"): Template("Laden gestartet", "Hallo {{ name }}, der Ladevorgang an {{ charger_id }} "
                                         "hat begonnen ({{ started_at }})."),
    ("charging.completed", "en"): Template("Charging session ended", "Hello {{ name }}, your session at "
                                           "{{ charger_id }} ended: {{ energy_kwh }} kWh."),
    ("charging.completed", "de"): Template("Ladevorgang beendet", "Hallo {{ name }}, Ihr Ladevorgang an "
                                           "{{ charger_id }} ist beendet: {{ energy_kwh }} kWh."),
    ("charging.failed", "en"): Template("Charging failed", "Hello {{ name }}, charging at {{ charger_id }} failed "
                                        "({{ reason }}). {{ detail }}"),
    ("charging.failed", "de"): Template("Laden fehlgeschlagen", "Hallo {{ name }}, das Laden an {{ charger_id }} ist "
                                        "fehlgeschlagen ({{ reason }}). {{ detail }}"),
    (E, "en"): Template("Charging complete — please move your car",
                        "Hello {{ name }}, charging complete ({{ energy_kwh }} kWh) — move within {{ grace_minutes }} "
                        "minutes{% if idle_rate %} or an idle fee of {{ idle_rate }} {{ currency }}/min starts at "
                        "{{ idle_starts_at }}{% endif %}."),
    (E, "de"): Template("Laden abgeschlossen — bitte Fahrzeug umparken",
                        "Hallo {{ name }}, Laden abgeschlossen ({{ energy_kwh }} kWh) — bitte innerhalb von "
                        "{{ grace_minutes }} Minuten umparken{% if idle_rate %}, sonst fällt ab {{ idle_starts_at }} "
                        "eine Standgebühr von {{ idle_rate }} {{ currency }}/min an{% endif %}."),
    ("parking.reserved", "en"): Template("Reservation confirmed", "Hello {{ name }}, bay {{ bay_id }} is yours from "
                                         "{{ starts_at }} to {{ ends_at }}."),
    ("parking.reserved", "de"): Template("Reservierung bestätigt", "Hallo {{ name }}, Stellplatz {{ bay_id }} ist "
                                         "von {{ starts_at }} bis {{ ends_at }} für Sie reserviert."),
    ("reservation.reminder", "en"): Template("Your reservation starts soon", "Hello {{ name }}, your reservation of "
                                             "bay {{ bay_id }} starts in {{ minutes }} minutes ({{ starts_at }})."),
    ("reservation.reminder", "de"): Template("Ihre Reservierung beginnt bald", "Hallo {{ name }}, Ihre Reservierung "
                                             "für Stellplatz {{ bay_id }} beginnt in {{ minutes }} Minuten "
                                             "({{ starts_at }})."),
    ("parking.cancelled", "en"): Template("Reservation cancelled", "Hello {{ name }}, your reservation of bay "
                                          "{{ bay_id }} ({{ starts_at }}) is cancelled."),
    ("parking.cancelled", "de"): Template("Reservierung storniert", "Hallo {{ name }}, Ihre Reservierung für "
                                          "Stellplatz {{ bay_id }} ({{ starts_at }}) ist storniert."),
    ("parking.no_show", "en"): Template("Reservation expired", "Hello {{ name }}, your reservation of bay {{ bay_id }} "
                                        "({{ starts_at }}) expired: you did not arrive (no-show)."),
    ("parking.no_show", "de"): Template("Reservierung verfallen", "Hallo {{ name }}, Ihre Reservierung für Stellplatz "
                                        "{{ bay_id }} ({{ starts_at }}) ist verfallen: Sie sind nicht erschienen."),
    ("parking.released", "en"): Template("Thanks for parking", "Hello {{ name }}, you left bay {{ bay_id }} after "
                                         "{{ duration_minutes }} minutes."),
    ("parking.released", "de"): Template("Danke fürs Parken", "Hallo {{ name }}, Sie haben Stellplatz {{ bay_id }} "
                                         "nach {{ duration_minutes }} Minuten verlassen."),
    ("parking.overstay", "en"): Template("Your stay is over its limit", "Hello {{ name }}, your stay in bay "
                                         "{{ bay_id }} passed its limit at {{ limit_at }}."),
    ("parking.overstay", "de"): Template("Parkzeit überschritten", "Hallo {{ name }}, Ihre Parkzeit auf Stellplatz "
                                         "{{ bay_id }} ist seit {{ limit_at }} überschritten."),
    ("payment.completed", "en"): Template("Payment received", "Hello {{ name }}, we received {{ amount }} "
                                          "{{ currency }}. Thank you."),
    ("payment.completed", "de"): Template("Zahlung erhalten", "Hallo {{ name }}, wir haben {{ amount }} "
                                          "{{ currency }} erhalten. Vielen Dank."),
    ("payment.failed", "en"): Template("Payment failed", "Hello {{ name }}, your payment of {{ amount }} "
                                       "{{ currency }} failed ({{ reason }}). Please update your payment method."),
    ("payment.failed", "de"): Template("Zahlung fehlgeschlagen", "Hallo {{ name }}, Ihre Zahlung über {{ amount }} "
                                       "{{ currency }} ist fehlgeschlagen ({{ reason }}). Bitte prüfen Sie Ihre "
                                       "Zahlungsart."),
    ("payment.invoice_issued", "en"): Template("Invoice {{ number }}", "Hello {{ name }}, invoice {{ number }} over "
                                               "{{ total }} {{ currency }} is issued."),
    ("payment.invoice_issued", "de"): Template("Rechnung {{ number }}", "Hallo {{ name }}, Rechnung {{ number }} über "
                                               "{{ total }} {{ currency }} wurde ausgestellt."),
    ("account.password_reset_requested", "en"): Template("Reset your password", "Hello {{ name }}, reset your "
                                                         "password here (until {{ expires_at }}): {{ url }}"),
    ("account.password_reset_requested", "de"): Template("Passwort zurücksetzen", "Hallo {{ name }}, hier können Sie "
                                                         "Ihr Passwort zurücksetzen (bis {{ expires_at }}): {{ url }}"),
    ("account.email_verification_requested", "en"): Template("Confirm your e-mail address", "Hello {{ name }}, "
                                                             "confirm your address (until {{ expires_at }}): "
                                                             "{{ url }}"),
    ("account.email_verification_requested", "de"): Template("E-Mail-Adresse bestätigen", "Hallo {{ name }}, bitte "
                                                             "bestätigen Sie Ihre Adresse (bis {{ expires_at }}): "
                                                             "{{ url }}"),
    ("charging.charger_faulted", "en"): Template("Charger {{ charger_id }} faulted", "Site {{ site_id }}: charger "
                                                 "{{ charger_id }} reported {{ error_code }}."),
    ("charging.charger_faulted", "de"): Template("Ladepunkt {{ charger_id }} gestört", "Standort {{ site_id }}: "
                                                 "Ladepunkt {{ charger_id }} meldet {{ error_code }}."),
    ("charging.charger_offline", "en"): Template("Charger {{ charger_id }} offline", "Site {{ site_id }}: charger "
                                                 "{{ charger_id }} is offline since {{ since }}."),
    ("charging.charger_offline", "de"): Template("Ladepunkt {{ charger_id }} offline", "Standort {{ site_id }}: "
                                                 "Ladepunkt {{ charger_id }} ist seit {{ since }} offline."),
    ("parking.site_offline", "en"): Template("Site {{ site_id }} offline", "Site {{ site_id }} lost its link to the "
                                             "cloud ({{ reason }}) at {{ since }}."),
    ("parking.site_offline", "de"): Template("Standort {{ site_id }} offline", "Standort {{ site_id }} hat seit "
                                             "{{ since }} keine Verbindung zur Cloud ({{ reason }})."),
    ("charging.anomaly", "en"): Template("Charging anomaly at {{ site_id }}", "Charger {{ charger_id }}: {{ anomaly }}"
                                         " — {{ detail }}"),
    ("charging.anomaly", "de"): Template("Lade-Anomalie an {{ site_id }}", "Ladepunkt {{ charger_id }}: {{ anomaly }}"
                                         " — {{ detail }}"),
}


class TemplateInvalid(DomainError):
    """422: the template does not parse or uses a variable its kind does not have."""


def _line_of(source: str, name: str) -> int:
    pattern = re.compile(r"\b" + re.escape(name) + r"\b")
    for number, line in enumerate(source.splitlines(), start=1):
        if pattern.search(line):
            return number
    return 1


def validate(kind: str, template: Template) -> None:
    """Refuse a template that would fail at send time, naming the field and the line."""
    allowed = VARIABLES[kind]
    for field_name, source, env in (("subject", template.subject, _TEXT), ("text", template.text, _TEXT),
                                    ("html", template.html, _HTML)):
        if source is None:
            continue
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as error:
            raise TemplateInvalid(f"{field_name}: line {error.lineno}: {error.message}",
                                  code="template_syntax") from None
        unknown = sorted(meta.find_undeclared_variables(tree) - allowed)
        if unknown:
            raise TemplateInvalid(f"{field_name}: line {_line_of(source, unknown[0])}: unknown variable "
                                  f"{unknown[0]!r} (a {kind} template may use {', '.join(sorted(allowed))})",
                                  code="template_variable")


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(template: Template, values: dict[str, Any]) -> Rendered:
    subject = _TEXT.from_string(template.subject).render(values).replace("\n", " ").strip()
    text = _TEXT.from_string(template.text).render(values)
    if template.html is not None:
        html = _HTML.from_string(template.html).render(values)
    else:
        paragraphs = _HTML.from_string("{% for p in ps %}<p>{{ p }}</p>{% endfor %}").render(
            ps=[p for p in text.split("\n\n") if p.strip()])
        html = f"<!doctype html><html><body>{paragraphs}</body></html>"
    return Rendered(subject, text, html)


def default(kind: str, language: str) -> Template:
    return DEFAULTS.get((kind, language)) or DEFAULTS[(kind, "en")]
