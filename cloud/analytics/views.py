"""What the analytics API answers (JSON; ``rows()`` flattens a report for ``Accept: text/csv``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

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
    energy_utilisation: float | None = Field(description="kWh / (maximum kW x available hours); null: no event "
                                             "carries the chargers' maximum power yet")
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


class VehicleTypesOut(BaseModel):
    sites: list[str]
    start: datetime
    end: datetime
    registered: dict[str, int] = Field(description="registered vehicles by type (every site)")
    visiting: dict[str, int] = Field(description="distinct attributed vehicles that arrived at the sites in the "
                                     "range, by type ('unknown': not registered)")
    note: str = Field(default="make and battery size are not carried by any vehicle event yet, so the distribution "
                      "is by type only")

    def rows(self) -> list[dict[str, Any]]:
        return ([{"population": "registered", "type": t, "vehicles": n} for t, n in sorted(self.registered.items())]
                + [{"population": "visiting", "type": t, "vehicles": n} for t, n in sorted(self.visiting.items())])


class ServiceHealth(BaseModel):
    service: str
    healthy: bool
    ready: bool
    checks: dict[str, bool] = Field(default_factory=dict, description="what its /ready reported")


class SiteHealth(BaseModel):
    site_id: str
    edge: str = Field(description="connected | offline | unknown (from parking.site_online / site_offline)")
    edge_since: datetime | None
    last_event_at: datetime | None = Field(description="the latest event about the site")
    chargers_offline: list[str]
    chargers_faulted: list[str]
    anomalies_24h: int = Field(description="charging.anomaly events of the last 24 hours")


class HealthOut(BaseModel):
    at: datetime
    services: list[ServiceHealth] = Field(description="every service's /health and /ready (admins only)")
    analytics_outbox_backlog: int
    analytics_parked_messages: int
    sites: list[SiteHealth]

    def rows(self) -> list[dict[str, Any]]:
        return [{**s.model_dump(), "chargers_offline": " ".join(s.chargers_offline),
                 "chargers_faulted": " ".join(s.chargers_faulted)} for s in self.sites]
