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
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from cloud import pricing
from cloud.contracts.errors import DomainError, NotFound
from cloud.contracts.identity import SITE_SCOPED, Forbidden, Principal
from cloud.pricing import Invoice, Tariff
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
