"""A site's tariff: set, changed, read, refused; every change a new version announced with the
whole tariff, in the same unit of work."""

from __future__ import annotations

from typing import Any

import pytest

from cloud.contracts.errors import Conflict, NotFound
from cloud.contracts.identity import Forbidden
from cloud.contracts.payments import TariffChanged
from cloud.payments import domain
from cloud.payments.service import PaymentService
from cloud.pricing import Tariff
from tests.support.identity import PRINCIPALS
from tests.unit.cloud.payments.conftest import ADMIN, T0, Clock, Units, tariff, tariff_json
from tests.unit.cloud.payments.fakes import InMemoryPaymentsRepository


async def test_a_first_tariff_is_version_1_and_announced_whole(payments: PaymentService, units: Units) -> None:
    stored = await payments.change_rates(ADMIN, "site-1", tariff())
    assert (stored.site_id, stored.version, stored.updated_at, stored.updated_by) == ("site-1", 1, T0, "acc-admin")
    assert stored.tariff == tariff()
    [event] = units.events
    assert isinstance(event, TariffChanged)
    assert (event.site_id, event.currency, event.version, event.changed_at) == ("site-1", "EUR", 1, T0)
    assert Tariff.model_validate(event.tariff) == tariff(), "the event carries the whole tariff"
    assert event.tariff["tax_rate"] == "0.19", "money travels as decimal strings"
    assert await payments.rates(ADMIN, "site-1") == stored


async def test_each_change_is_the_next_version(payments: PaymentService, units: Units, clock: Clock) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    clock.advance(hours=1)
    night = tariff(tax_rate="0.07")
    changed = await payments.change_rates(PRINCIPALS["operator_1"], "site-1", night)
    assert (changed.version, changed.updated_at, changed.updated_by) == (2, clock.now, "acc-operator-1")
    assert changed.tariff.tax_rate == night.tax_rate
    assert [(e.version, e.tariff["tax_rate"]) for e in units.events if isinstance(e, TariffChanged)] == [
        (1, "0.19"), (2, "0.07")]
    assert (await payments.rates(ADMIN, "site-1")).version == 2


async def test_the_tariff_in_force_sent_again_changes_nothing(
        payments: PaymentService, units: Units, repo: InMemoryPaymentsRepository, clock: Clock) -> None:
    first = await payments.change_rates(ADMIN, "site-1", tariff())
    clock.advance(minutes=5)
    again = await payments.change_rates(PRINCIPALS["operator_1"], "site-1", tariff())
    assert (again.version, again.updated_at, again.tariff) == (1, first.updated_at, first.tariff)
    assert again.updated_by == "acc-admin", "who set the version in force"
    assert (units.names(), repo.saves) == (["payment.tariff_changed"], 1)


async def test_sites_have_their_own_tariffs_and_versions(payments: PaymentService) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    await payments.change_rates(ADMIN, "site-1", tariff(currency="CHF"))
    other = await payments.change_rates(PRINCIPALS["operator_2"], "site-2", tariff("site-2"))
    assert (other.site_id, other.version, other.tariff.currency) == ("site-2", 1, "EUR")
    assert (await payments.rates(ADMIN, "site-1")).tariff.currency == "CHF"


async def test_a_site_without_a_tariff_is_not_found(payments: PaymentService) -> None:
    with pytest.raises(NotFound) as missing:
        await payments.rates(ADMIN, "site-1")
    assert (missing.value.code, missing.value.detail) == ("unknown_tariff", "no tariff is set for site 'site-1'")


async def test_drivers_read_prices_but_not_who_set_them(payments: PaymentService) -> None:
    await payments.change_rates(PRINCIPALS["operator_1"], "site-1", tariff())
    seen = {who: await payments.rates(PRINCIPALS[who], "site-1")
            for who in ("driver_a", "driver_b", "operator_1", "technician_1", "admin")}
    assert {who: rates.updated_by for who, rates in seen.items()} == {
        "driver_a": None, "driver_b": None, "operator_1": "acc-operator-1", "technician_1": "acc-operator-1",
        "admin": "acc-operator-1"}
    assert all(rates.tariff == tariff() for rates in seen.values())


async def test_an_operator_of_another_site_is_told_the_site_has_no_tariff(payments: PaymentService) -> None:
    with pytest.raises(NotFound) as before:
        await payments.rates(PRINCIPALS["operator_2"], "site-1")
    await payments.change_rates(ADMIN, "site-1", tariff())
    with pytest.raises(NotFound) as after:
        await payments.rates(PRINCIPALS["operator_2"], "site-1")
    assert (after.value.code, after.value.detail) == (before.value.code, before.value.detail)


@pytest.mark.parametrize("who, refusal", [("driver_a", Forbidden), ("technician_1", Forbidden),
                                          ("operator_2", NotFound)])
async def test_who_may_not_change_a_tariff_changes_nothing(
        payments: PaymentService, units: Units, who: str, refusal: type[Exception]) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    with pytest.raises(refusal):
        await payments.change_rates(PRINCIPALS[who], "site-1", tariff(tax_rate="0"))
    with pytest.raises(refusal):
        payments.check_may_change_rates(PRINCIPALS[who], "site-1")
    assert (await payments.rates(ADMIN, "site-1")).version == 1
    assert units.names() == ["payment.tariff_changed"]


async def test_a_tariff_of_another_site_is_refused(payments: PaymentService, units: Units) -> None:
    with pytest.raises(domain.InvalidTariff) as refused:
        await payments.change_rates(ADMIN, "site-1", tariff("site-2"))
    assert (refused.value.status, refused.value.code) == (422, "invalid_tariff")
    assert [loc for loc, _ in refused.value.errors] == [("site_id",)]
    assert units.events == []
    with pytest.raises(NotFound):
        await payments.rates(ADMIN, "site-1")


async def test_a_change_that_cannot_be_stored_is_neither_kept_nor_announced(
        payments: PaymentService, units: Units, repo: InMemoryPaymentsRepository) -> None:
    await payments.change_rates(ADMIN, "site-1", tariff())
    repo.fail_next_save = True
    with pytest.raises(Conflict):
        await payments.change_rates(ADMIN, "site-1", tariff(tax_rate="0.07"))
    assert (await payments.rates(ADMIN, "site-1")).tariff == tariff()
    assert units.names() == ["payment.tariff_changed"]


# --- the body of a PUT -------------------------------------------------------------------------


@pytest.mark.parametrize("site_id", [None, "site-1"])
def test_the_body_names_the_site_of_the_path_or_none(site_id: str | None) -> None:
    body = tariff_json(site_id)
    if site_id is None:
        assert "site_id" not in body
    assert domain.read_tariff("site-1", body) == tariff()
    assert domain.read_tariff("site-1", {**tariff_json(None), "site_id": None}) == tariff()


def test_a_body_naming_another_site_is_refused_on_site_id() -> None:
    with pytest.raises(domain.InvalidTariff) as refused:
        domain.read_tariff("site-1", tariff_json("site-2"))
    assert refused.value.errors == [(("site_id",), "must be the site of the path, 'site-1' (or left out)")]


@pytest.mark.parametrize("change, field", [
    ({"currency": None}, ("currency",)),
    ({"tax_rate": "-0.1"}, ("tax_rate",)),
    ({"tax_rate": "1.5"}, ("tax_rate",)),
    ({"elements": []}, ("elements",)),
    ({"elements": [{"components": [{"type": "energy", "price": "0.35", "step_size": 0}]}]},
     ("elements", 0, "components", 0, "step_size")),
    ({"elements": [{"components": [{"type": "fuel", "price": "1"}]}]}, ("elements", 0, "components", 0, "type")),
    ({"elements": [{"components": [{"type": "energy", "price": "cheap"}]}]},
     ("elements", 0, "components", 0, "price")),
    ({"discount": "0.1"}, ("discount",)),
    ({"currency": "EURO"}, ("currency",)),
    ({"time_zone": "Europe/Atlantis"}, ("time_zone",)),
    ({"elements": [{"components": [{"type": "flat", "price": "0.505"}]}]}, ("elements", 0, "components", 0, "price")),
    ({"elements": [{"components": [{"type": "energy", "price": "0.35"}]},
                   {"components": [{"type": "energy", "price": "0.30"}]}]}, ("elements", 1)),
])
def test_an_invalid_tariff_is_refused_naming_the_field(change: dict[str, Any], field: tuple[Any, ...]) -> None:
    body = {k: v for k, v in {**tariff_json(), **change}.items() if v is not None}
    with pytest.raises(domain.InvalidTariff) as refused:
        domain.read_tariff("site-1", body)
    assert field in [loc for loc, _ in refused.value.errors], refused.value.errors
    assert refused.value.detail.startswith("invalid tariff: ")


@pytest.mark.parametrize("body", [[], "a tariff", 42, None])
def test_a_body_that_is_no_object_is_refused(body: Any) -> None:
    with pytest.raises(domain.InvalidTariff) as refused:
        domain.read_tariff("site-1", body)
    assert refused.value.errors == [((), "send the whole tariff as a JSON object")]
