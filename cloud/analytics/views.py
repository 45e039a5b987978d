"""What the analytics API answers (JSON; ``rows()`` flattens a report for ``Accept: text/csv``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pydantic_core
from pydantic import BaseModel, Field

from cloud.analytics.domain import DOC_TOTALS
from cloud.pricing.currencies import minor_unit


class UsagePeriod(BaseModel):
    period: str = Field(description="the period in the site's time zone (hour, day, ISO week or month), or total")
    stays: int
    charging_sessions: int
    energy_wh: int
    energy_kwh: Decimal
    occupied_hours: float
    time_utilisation: float | None = Field(description="occupied bay hours / bay hours (bays from the site's "
                                           "inventory); null when the bay count or bay type split is unknown")
    energy_utilisation: float | None = Field(description="kWh / (the chargers' maximum kW together x hours); "
                                             "null when a site's chargers' maximum power is not known "
                                             "(parking.inventory_changed 1.1) or the bay type is not ev")
    idle_minutes: float
    blocked_minutes: float
    reservations: int
    reservations_kept: int
    reservations_cancelled: int
    no_shows: int
    no_show_rate: float | None = Field(description="no-shows / (kept + no-shows)")
    visits_with_charging: int
    first_attempt_success: float | None = Field(description="share of visits whose first session delivered "
                                                "more than 0.1 kWh and stopped normally with no fault")


class UsageOut(BaseModel):
    sites: list[str]
    start: datetime
    end: datetime
    granularity: str
    bay_type: str | None
    periods: list[UsagePeriod]
    total: UsagePeriod

    def rows(self) -> list[dict[str, Any]]:
        return [p.model_dump() for p in self.periods] + [self.total.model_dump()]


class UsageReport:
    """A usage report as computed (:class:`UsageOut`'s fields, in its order and types): written as JSON
    straight from them, and validated into a :class:`UsageOut` when read in Python (its attributes).
    A year by hour is 8,760 periods: validating them into models only to write them out again costs
    as much as the rest of the request."""

    def __init__(self, fields: dict[str, Any], *, periods_json: str | None = None) -> None:
        self._fields = fields
        self._periods_json = periods_json  # the periods as PostgreSQL wrote them: a JSON array's items
        self._model: UsageOut | None = None

    @property
    def model(self) -> UsageOut:
        if self._model is None:
            self._model = (UsageOut.model_validate(self._fields) if self._periods_json is None
                           else UsageOut.model_validate_json(self.model_dump_json()))
        return self._model

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def model_dump_json(self) -> str:
        written = pydantic_core.to_json(self._fields).decode()
        if self._periods_json is None:
            return written
        # the first '"periods":[]' is the key itself: a string value before it has its quotes escaped
        return written.replace('"periods":[]', f'"periods":[{self._periods_json}]', 1)

    def rows(self) -> list[dict[str, Any]]:
        return self.model.rows()


class RevenuePeriod(BaseModel):
    site_id: str
    currency: str
    period: str = Field(description="by invoice date in the site's time zone")
    components: dict[str, Decimal] = Field(default_factory=dict, description="invoiced net per component")
    refunds: dict[str, Decimal] = Field(default_factory=dict, description="credit-noted net per component")
    invoiced_net: Decimal = Decimal(0)
    refunded_net: Decimal = Decimal(0)
    net: Decimal = Field(default=Decimal(0), description="invoiced net - refunded net")
    tax: Decimal = Field(default=Decimal(0), description="invoiced tax - refunded tax")
    total: Decimal = Field(default=Decimal(0), description="invoiced total - refunded total (what was charged)")
    invoices: int = 0
    credit_notes: int = 0

    def add(self, kind: str, component: str, amount: Decimal, documents: int) -> None:
        sign = 1 if kind == "invoice" else -1
        if component in DOC_TOTALS:
            if component == "#net":
                self.net += sign * amount
                if kind == "invoice":
                    self.invoiced_net += amount
                    self.invoices += documents
                else:
                    self.refunded_net += amount
                    self.credit_notes += documents
            elif component == "#tax":
                self.tax += sign * amount
            else:
                self.total += sign * amount
            return
        into = self.components if kind == "invoice" else self.refunds
        into[component] = into.get(component, Decimal(0)) + amount

    def finished(self) -> RevenuePeriod:
        try:
            exact = Decimal(1).scaleb(-minor_unit(self.currency))
        except KeyError:  # a code the pricing library does not list: cents
            exact = Decimal("0.01")

        def tidy(value: Decimal) -> Decimal:  # sums of rounded lines: shown at the currency's minor unit
            return value.quantize(exact) if value == value.quantize(exact) else value.normalize()

        return self.model_copy(update={
            "components": {k: tidy(v) for k, v in sorted(self.components.items())},
            "refunds": {k: tidy(v) for k, v in sorted(self.refunds.items())},
            **{name: tidy(getattr(self, name)) for name in ("invoiced_net", "refunded_net", "net", "tax", "total")}})


class RevenueOut(BaseModel):
    sites: list[str]
    start: datetime
    end: datetime
    granularity: str
    periods: list[RevenuePeriod]

    def rows(self) -> list[dict[str, Any]]:
        names = sorted({c for p in self.periods for c in (*p.components, *p.refunds)})
        out = []
        for p in self.periods:
            row: dict[str, Any] = {"site_id": p.site_id, "currency": p.currency, "period": p.period}
            row.update({f"component_{n}": p.components.get(n, Decimal(0)) for n in names})
            row.update({f"refund_{n}": p.refunds.get(n, Decimal(0)) for n in names})
            row.update(invoiced_net=p.invoiced_net, refunded_net=p.refunded_net, net=p.net, tax=p.tax,
                       total=p.total, invoices=p.invoices, credit_notes=p.credit_notes)
            out.append(row)
        return out


class PeakCell(BaseModel):
    weekday: int = Field(ge=1, le=7, description="ISO weekday in the site's time zone: 1 Monday … 7 Sunday")
    hour: int = Field(ge=0, le=23, description="local hour")
    occupied_hours: float
    occupancy: float | None = Field(description="occupied bay hours / bay hours of that weekday and hour")
    sessions: int
    energy_kwh: float
    charging_hours: float


class PeakHoursOut(BaseModel):
    sites: list[str]
    start: datetime
    end: datetime
    cells: list[PeakCell]

    def rows(self) -> list[dict[str, Any]]:
        return [c.model_dump() for c in self.cells]


class VehicleDistribution(BaseModel):
    vehicles: int = Field(description="how many vehicles")
    by_type: dict[str, int] = Field(description="electric, plug_in_hybrid, hybrid, combustion or unknown; most "
                                    "vehicles first")
    by_make: dict[str, int] = Field(description="makes differing only in case are one; 'unknown': registered "
                                    "without one (or before events carried it); most vehicles first")
    by_battery: dict[str, int] = Field(description="battery size bands in kWh, lower bound inclusive: <30, 30-50, "
                                       "50-75, 75-100, >=100 (each listed, even at 0), then 'none' (a combustion "
                                       "vehicle without a battery size) and 'unknown' when there are any")

    def rows(self, population: str) -> list[dict[str, Any]]:
        return [{"population": population, "dimension": dimension, "group": group, "vehicles": n}
                for dimension, counts in (("type", self.by_type), ("make", self.by_make),
                                          ("battery_kwh", self.by_battery))
                for group, n in counts.items()]


class VehicleTypesOut(BaseModel):
    sites: list[str]
    start: datetime
    end: datetime
    registered: VehicleDistribution = Field(description="every registered vehicle (of every site)")
    visiting: VehicleDistribution = Field(description="the distinct attributed vehicles that arrived at the sites "
                                          "in the range ('unknown' throughout: a vehicle never registered here)")

    def rows(self) -> list[dict[str, Any]]:
        return self.registered.rows("registered") + self.visiting.rows("visiting")


class ServiceHealth(BaseModel):
    service: str
    healthy: bool = Field(description="its /health answered 200 (false: down or not answering in time)")
    ready: bool
    checks: dict[str, bool] = Field(default_factory=dict, description="what its /ready reported")
    outbox_backlog: int | None = Field(default=None, description="events in its outbox not yet published "
                                       "(this and what follows: from its /status; null when not known)")
    parked_messages: int | None = Field(default=None, description="messages its consumers parked "
                                        "(`evpark events parked`)")
    consumer_lag: int | None = Field(default=None, description="messages waiting at the broker in its queues "
                                     "(0 on the in-process bus, which delivers as it publishes)")
    error_rate: float | None = Field(default=None, description="share of its HTTP answers of the last 5 minutes "
                                     "that were 5xx; null without a request")
    requests_5m: int | None = None
    errors_5m: int | None = None


class SiteHealth(BaseModel):
    site_id: str
    edge: str = Field(description="connected | offline | unknown (from parking.site_online / site_offline)")
    edge_since: datetime | None
    last_event_at: datetime | None = Field(description="the latest event about the site")
    edge_heard_at: datetime | None = Field(default=None, description="the last envelope of its edge a service "
                                           "received (its high-water marks come every minute while connected)")
    edge_backlog: int | None = Field(default=None, description="envelopes its edge numbered (as of its last "
                                     "high-water marks) that the cloud has not received: in flight, or lost and "
                                     "asked for again; per category the most any one reading service misses, "
                                     "summed. Null: no service reading its uplink answered with a stream of it")
    chargers_offline: list[str]
    chargers_faulted: list[str]
    anomalies_24h: int = Field(description="charging.anomaly events of the last 24 hours")


class HealthOut(BaseModel):
    at: datetime
    services: list[ServiceHealth] = Field(description="every service's /health, /ready and /status, analytics "
                                          "included (admins only)")
    sites: list[SiteHealth]

    def rows(self) -> list[dict[str, Any]]:
        return [{**s.model_dump(), "chargers_offline": " ".join(s.chargers_offline),
                 "chargers_faulted": " ".join(s.chargers_faulted)} for s in self.sites]
