"""Payment rules, free of I/O: a site's tariff and its versions, who may read and change it
(:func:`check_may_read_tariff`, :func:`check_may_change_tariff`), and the estimate of a stay,
priced by the one engine (:mod:`cloud.pricing`, pure as well).

Prices are for drivers to see: every driver reads every site's tariff, and any signed-in caller
asks for an estimate. A site's tariff is changed by its operators and by admins; its technicians
read it; an operator or technician of other sites is answered as if the site had no tariff.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pydantic import ValidationError

from cloud import pricing
from cloud.contracts.errors import DomainError, NotFound
from cloud.contracts.identity import OPERATOR, SITE_SCOPED, Forbidden, Principal
from cloud.pricing import Invoice, Tariff
from cloud.pricing.currencies import MINOR_UNITS
from cloud.pricing.tariff import BayType, PowerClass

TARIFF_CHANGE_FORBIDDEN = "only an admin or an operator of the site changes its tariff"
TARIFF_READ_FORBIDDEN = "tariffs are for drivers, admins and the site's operators and technicians"

MAX_ESTIMATE_STAY = timedelta(days=31)
"""The longest stay an estimate prices."""
MAX_ESTIMATE_KWH = Decimal(1000)
"""The most energy an estimate prices."""

Loc = tuple[str | int, ...]


# --- a site's tariff ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SiteTariff:
    """The tariff a site charges now, and which version of it this is."""

    site_id: str
    tariff: Tariff
    version: int
    """1 for the site's first tariff, one more per change."""
    updated_at: datetime
    updated_by: str
    """The account (``sub``) that set this version."""


class InvalidInput(DomainError):
    """A request whose fields break a rule; ``errors`` names each field (a path of names and
    indexes, as pydantic gives it) with what is wrong."""

    def __init__(self, detail: str, errors: Sequence[tuple[Loc, str]], *, code: str) -> None:
        super().__init__(detail, code=code)
        self.errors = list(errors)


class InvalidTariff(InvalidInput):
    def __init__(self, errors: Sequence[tuple[Loc, str]]) -> None:
        super().__init__("invalid tariff: " + _summary(errors), errors, code="invalid_tariff")


class InvalidEstimate(InvalidInput):
    def __init__(self, errors: Sequence[tuple[Loc, str]]) -> None:
        super().__init__("invalid estimate request: " + _summary(errors), errors, code="invalid_estimate")


def _summary(errors: Sequence[tuple[Loc, str]]) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in loc) or 'body'}: {message}" for loc, message in errors[:5])


def no_tariff(site_id: str) -> NotFound:
    """The answer for a site without a tariff, or one that is not the caller's (the same, on purpose)."""
    return NotFound(f"no tariff is set for site {site_id!r}", code="unknown_tariff")


def read_tariff(site_id: str, data: Any) -> Tariff:
    """The tariff a PUT for ``site_id`` sends: its ``site_id`` is the path's (taken from it when
    absent or null); anything else is :class:`InvalidTariff`, naming each bad field as the
    tariff model's validation does."""
    if not isinstance(data, Mapping):
        raise InvalidTariff([((), "send the whole tariff as a JSON object")])
    given = data.get("site_id")
    if given is not None and given != site_id:
        raise InvalidTariff([(("site_id",), f"must be the site of the path, {site_id!r} (or left out)")])
    try:
        return Tariff.model_validate({**data, "site_id": site_id})
    except ValidationError as exc:
        raise InvalidTariff([(tuple(error["loc"]), error["msg"]) for error in exc.errors()]) from None


def check_tariff_site(site_id: str, tariff: Tariff) -> None:
    if tariff.site_id != site_id:
        raise InvalidTariff([(("site_id",), f"must be the site of the path, {site_id!r} (or left out)")])


def change_tariff(current: SiteTariff | None, tariff: Tariff, by: str, now: datetime) -> SiteTariff | None:
    """The site's next tariff version; None when ``tariff`` is the one in force already (a PUT
    sent again changes nothing)."""
    if current is None:
        return SiteTariff(site_id=tariff.site_id, tariff=tariff, version=1, updated_at=now, updated_by=by)
    if current.tariff == tariff:
        return None
    return replace(current, tariff=tariff, version=current.version + 1, updated_at=now, updated_by=by)


# --- who may read and change it ----------------------------------------------------------------


def check_may_read_tariff(user: Principal, site_id: str) -> None:
    """Admins, drivers (prices are for drivers to see) and the site's operators and technicians
    read its tariff. An operator or technician of other sites gets the answer for a site without
    a tariff; anybody else is :class:`Forbidden`."""
    if user.is_admin or user.is_driver or user.operates(site_id):
        return
    if user.roles & set(SITE_SCOPED):
        raise no_tariff(site_id)
    raise Forbidden(TARIFF_READ_FORBIDDEN)


def check_may_change_tariff(user: Principal, site_id: str) -> None:
    """An admin, or an operator of ``site_id``, changes its tariff. A technician of the site reads
    it but may not change it and a driver may not either (:class:`Forbidden`); an operator or
    technician of other sites gets the answer for a site without a tariff."""
    if user.manages(site_id):
        return
    if user.operates(site_id):
        raise Forbidden(TARIFF_CHANGE_FORBIDDEN + "; a technician reads it but does not change it")
    if user.roles & set(SITE_SCOPED):
        raise no_tariff(site_id)
    raise Forbidden(TARIFF_CHANGE_FORBIDDEN)


def may_see_who_changed(user: Principal, site_id: str) -> bool:
    """Who set the tariff (an account id) is for admins and the site's operators and technicians,
    not for drivers."""
    return user.operates(site_id)


def check_may_estimate(user: Principal) -> None:
    """Every signed-in caller asks what a stay would cost: nothing to refuse."""


# --- the estimate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimateQuery:
    """A stay to price: a bay type, one charging session of a power class delivering
    ``energy_kwh`` (none when it is 0), from ``arrive`` to ``leave``."""

    bay_type: BayType
    power_class: PowerClass
    arrive: datetime
    leave: datetime
    energy_kwh: Decimal


def check_estimate(query: EstimateQuery) -> None:
    """:class:`InvalidEstimate` for a stay that ends before it starts, lasts longer than
    :data:`MAX_ESTIMATE_STAY`, or charges a negative or implausible amount of energy."""
    errors: list[tuple[Loc, str]] = []
    if query.arrive.tzinfo is None or query.leave.tzinfo is None:
        errors.append((("arrive",), "give times with their offset (e.g. 2026-11-23T18:00:00Z)"))
    elif query.leave <= query.arrive:
        errors.append((("leave",), "must be after arrive"))
    elif query.leave - query.arrive > MAX_ESTIMATE_STAY:
        errors.append((("leave",), f"an estimate prices stays of at most {MAX_ESTIMATE_STAY.days} days"))
    if not query.energy_kwh.is_finite() or query.energy_kwh < 0:
        errors.append((("energy_kwh",), "must be a number of kWh, 0 or more"))
    elif query.energy_kwh > MAX_ESTIMATE_KWH:
        errors.append((("energy_kwh",), f"an estimate prices at most {MAX_ESTIMATE_KWH} kWh"))
    if errors:
        raise InvalidEstimate(errors)


def estimate(rates: SiteTariff, query: EstimateQuery) -> Invoice:
    """What the engine would bill for the stay under the site's tariff; a stay the engine
    refuses is :class:`InvalidEstimate`."""
    check_estimate(query)
    try:
        return pricing.estimate(rates.tariff, bay_type=query.bay_type, power_class=query.power_class,
                                arrive=query.arrive, leave=query.leave, energy_kwh=query.energy_kwh)
    except ValidationError as exc:
        raise InvalidEstimate([(tuple(error["loc"]), error["msg"]) for error in exc.errors()]) from None
    except ValueError as exc:
        raise InvalidEstimate([((), str(exc))]) from None


# --- money ---------------------------------------------------------------------------------------
# Amounts are Decimals in a currency; stored as integer counts of its minor unit. The one rounding
# rule is the pricing engine's: each invoice line rounded once, half-up, to the minor unit; a
# credit note's tax share is rounded the same way (ROUND_HALF_UP).

MAX_AMOUNT = Decimal(100_000)
"""The largest single charge, refund or top-up."""


class InvalidAmount(InvalidInput):
    def __init__(self, errors: Sequence[tuple[Loc, str]]) -> None:
        super().__init__("invalid request: " + _summary(errors), errors, code="invalid_amount")


class PaymentDeclined(DomainError):
    """The payment method refused the money (a declined card, a short wallet, a provider timeout)."""

    status = 402
    title = "Payment required"

    def __init__(self, detail: str, *, code: str, payment_id: str | None = None) -> None:
        super().__init__(detail, code=code)
        self.payment_id = payment_id


def minor_units(currency: str) -> int:
    return MINOR_UNITS[currency]


def to_minor(amount: Decimal, currency: str) -> int:
    """The amount as an integer count of the currency's minor unit (exact: amounts are checked
    not to be more precise first)."""
    return int(amount.scaleb(minor_units(currency)).to_integral_value(ROUND_HALF_UP))


def from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-minor_units(currency))


def read_currency(value: Any, loc: Loc = ("currency",)) -> str:
    if not isinstance(value, str) or value not in MINOR_UNITS:
        raise InvalidAmount([(loc, f"{value!r} is not a known ISO 4217 currency code (e.g. EUR, CHF, JPY)")])
    return value


def read_amount(value: Any, currency: str, loc: Loc = ("amount",)) -> Decimal:
    """A positive amount of ``currency``, no more precise than its minor unit, at most
    :data:`MAX_AMOUNT`; given as a decimal string or a JSON number (read exactly)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise InvalidAmount([(loc, "must be a decimal amount such as \"12.50\"")])
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise InvalidAmount([(loc, "must be a decimal amount such as \"12.50\"")]) from None
    if not amount.is_finite():
        raise InvalidAmount([(loc, "must be a finite decimal amount")])
    if amount <= 0:
        raise InvalidAmount([(loc, "must be more than 0")])
    if amount > MAX_AMOUNT:
        raise InvalidAmount([(loc, f"must be at most {MAX_AMOUNT}")])
    if -amount.as_tuple().exponent > minor_units(currency):  # type: ignore[operator]
        raise InvalidAmount([(loc, f"is more precise than the {currency} minor unit "
                                   f"({minor_units(currency)} decimals)")])
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)))


def split_tax(gross_minor: int, tax_rate: Decimal) -> tuple[int, int]:
    """(net, tax) of a gross amount at ``tax_rate``: tax = gross * rate / (1 + rate), rounded half-up."""
    tax = int((Decimal(gross_minor) * tax_rate / (1 + tax_rate)).to_integral_value(ROUND_HALF_UP))
    return gross_minor - tax, tax


def share(part_minor: int, of_minor: int, whole_minor: int) -> int:
    """``whole`` * part / of, rounded half-up (a credit note's tax share of its invoice's tax)."""
    if of_minor == 0:
        return 0
    return int((Decimal(whole_minor) * part_minor / of_minor).to_integral_value(ROUND_HALF_UP))


# --- the sandbox card provider's test cards ------------------------------------------------------

SANDBOX_CARDS: dict[str, str] = {
    "4242424242424242": "approve",
    "4000000000000002": "declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000119": "provider_timeout",
}
"""The card numbers the sandbox provider knows, and what it does with a charge (Stripe's test
numbers); any other number is refused when the card is added."""


def check_card_number(value: Any) -> str:
    """The number of a sandbox test card, spaces and dashes removed."""
    if not isinstance(value, str):
        raise InvalidAmount([(("card_number",), "send the card number as a string")])
    number = value.replace(" ", "").replace("-", "")
    if not number.isdigit() or not 12 <= len(number) <= 19:
        raise InvalidAmount([(("card_number",), "must be 12 to 19 digits")])
    if number not in SANDBOX_CARDS:
        raise InvalidAmount([(("card_number",), "not a sandbox test card: use one of "
                                                + ", ".join(SANDBOX_CARDS))])
    return number


# --- automatic billing --------------------------------------------------------------------------

COMPONENTS = {"parking_time": "parking", "energy": "energy", "charging_time": "charging_time", "idle": "idle",
              "flat": "session_fee", "minimum": "adjustment", "maximum": "adjustment"}
"""The analytics component of each invoice line type (``payment.invoice_issued``'s components)."""

DEFAULT_POWER_CLASS: PowerClass = "ac"
"""The power class a session is priced with when the charging service did not know its charger's."""


def components(invoice: Invoice) -> dict[str, Decimal]:
    """Net amount per component of an invoice (tax left out)."""
    out: dict[str, Decimal] = {}
    for line in invoice.lines:
        if line.type == "tax":
            continue
        key = COMPONENTS[line.type]
        out[key] = out.get(key, Decimal(0)) + line.amount
    return out


def _at(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def session_usage(session: Mapping[str, Any], start: datetime | None = None,
                  end: datetime | None = None) -> pricing.SessionUsage | None:
    """A completed session (``charging.completed`` in JSON) as the engine prices it, its times kept
    within ``start``..``end`` (the stay); None for a session that never started or delivered nothing
    in a moment of time."""
    if session.get("started_at") is None or session.get("stopped_at") is None:
        return None
    started, stopped = _at(session["started_at"]), _at(session["stopped_at"])
    if start is not None:
        started, stopped = max(started, start), max(stopped, start)
    if end is not None:
        started, stopped = min(started, end), min(stopped, end)
    finished = session.get("energy_finished_at")
    finished_at = None if finished is None else min(max(_at(finished), started), stopped)
    energy = int(session.get("energy_wh") or 0)
    if stopped <= started:
        return None
    return pricing.SessionUsage(power_class=session.get("power_class") or DEFAULT_POWER_CLASS, started_at=started,
                                stopped_at=stopped, energy_wh=energy, energy_finished_at=finished_at)


def stay_usage(released: Mapping[str, Any], sessions: Sequence[Mapping[str, Any]]) -> pricing.Stay:
    """The stay a ``parking.released`` (in JSON) describes, with its completed sessions. With the bay's
    sensor unknown at the end (``sensor_known`` false) the stay has no departure: idle then ends at
    the last session's end (GLOSSARY)."""
    arrived = _at(released["arrived_at"])
    departed = _at(released["departed_at"]) if released.get("sensor_known", True) else None
    usages = [u for u in (session_usage(s, arrived, departed) for s in sessions) if u is not None]
    return pricing.Stay(bay_type=released["bay_type"], arrived_at=arrived, departed_at=departed,
                        sessions=sorted(usages, key=lambda u: u.started_at))


def lone_session_stay(session: Mapping[str, Any]) -> pricing.Stay | None:
    """A session on a charger that serves no sensed bay, priced as a stay of an EV bay from its
    start to its end, without a departure (idle ends at the session's end)."""
    usage = session_usage(session)
    if usage is None:
        return None
    return pricing.Stay(bay_type="ev", arrived_at=usage.started_at, departed_at=None, sessions=[usage])


def document_number(site_id: str, series: str, sequence: int) -> str:
    """``<site>-INV-000042`` or ``<site>-CN-000007``: the site's series and its gap-free sequence."""
    return f"{site_id}-{'INV' if series == 'invoice' else 'CN'}-{sequence:06d}"


# --- who may see and do what --------------------------------------------------------------------

PAYMENT_FORBIDDEN = "only an admin or an operator of the site charges and refunds"


def check_may_charge(user: Principal, site_id: str | None) -> None:
    """An ad-hoc charge is an operator's (of its site) or an admin's; ``site_id`` None (not given
    yet): refuses only a caller who may charge at no site."""
    if site_id is None:
        if not (user.is_admin or OPERATOR in user.roles):
            raise Forbidden(PAYMENT_FORBIDDEN)
        return
    if user.manages(site_id):
        return
    if user.roles & set(SITE_SCOPED) and not user.operates(site_id):
        raise NotFound(f"no site {site_id!r}", code="unknown_site")
    raise Forbidden(PAYMENT_FORBIDDEN)


def check_site_staff(user: Principal, site_id: str, *, manage: bool = False) -> None:
    """A site's billing settings and debts: its operators and technicians read them, its operators
    (and admins) change them; a driver is refused (403), staff of other sites told it does not exist."""
    if user.manages(site_id) or (not manage and user.operates(site_id)):
        return
    if user.roles & set(SITE_SCOPED) and not user.operates(site_id):
        raise NotFound(f"no site {site_id!r}", code="unknown_site")
    raise Forbidden("a site's billing settings and debts are for its operators" +
                    ("" if manage else " and technicians"))


def may_see_account(user: Principal, account_id: str) -> bool:
    """An account's payments, wallet and documents are its own and an admin's."""
    return user.is_admin or user.subject == account_id


def may_see_document(user: Principal, account_id: str, site_id: str | None) -> bool:
    """An invoice, a payment: the payer's, the site's operators' and technicians', an admin's."""
    return may_see_account(user, account_id) or (site_id is not None and user.operates(site_id))


def check_may_refund(user: Principal, account_id: str, site_id: str | None) -> None:
    """A refund is for an admin or an operator of the payment's site; the payer may not refund
    themself (403); anybody else is told the payment does not exist."""
    if user.is_admin or (site_id is not None and user.manages(site_id)):
        return
    if may_see_document(user, account_id, site_id):
        raise Forbidden(PAYMENT_FORBIDDEN)
    raise NotFound("no such payment", code="unknown_payment")


# --- an ad-hoc charge ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargeRequest:
    account_id: str
    site_id: str
    amount: Decimal
    currency: str
    method: str
    """card or wallet"""
    description: str | None


def read_charge(data: Any) -> ChargeRequest:
    """The body of ``POST /payments/charge``: ``account_id``, ``site_id``, ``amount``, ``currency``,
    ``method`` (``card``, the default, or ``wallet``) and an optional ``description``."""
    if not isinstance(data, Mapping):
        raise InvalidAmount([((), "send a JSON object")])
    errors: list[tuple[Loc, str]] = []
    for name in ("account_id", "site_id"):
        value = data.get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            errors.append(((name,), "required: a string of 1 to 64 characters"))
    method = data.get("method", "card")
    if method not in ("card", "wallet"):
        errors.append((("method",), "must be card or wallet"))
    description = data.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 500):
        errors.append((("description",), "must be a string of at most 500 characters"))
    currency = amount = None
    try:
        currency = read_currency(data.get("currency"))
        amount = read_amount(data.get("amount"), currency)
    except InvalidAmount as exc:
        errors.extend(exc.errors)
    if errors or currency is None or amount is None:
        raise InvalidAmount(errors)
    return ChargeRequest(account_id=data["account_id"], site_id=data["site_id"], amount=amount, currency=currency,
                         method=method, description=description)
