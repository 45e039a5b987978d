from __future__ import annotations

import pytest

from cloud.vehicles import domain


def test_plates_are_normalised() -> None:
    assert domain.normalise_plate("  ev-123   pk ") == "EV-123 PK"


@pytest.mark.parametrize("plate", ["", "-AB", "AB$1", "X" * 17])
def test_bad_plates_are_refused_naming_the_plate(plate: str) -> None:
    with pytest.raises(domain.InvalidVehicle, match="plate"):
        domain.normalise_plate(plate)


@pytest.mark.parametrize("tags", [(), ("A" * 21,), ("has space",), ("dup", "dup"), tuple(f"T{i}" for i in range(11))])
def test_bad_id_tags_are_refused(tags: tuple[str, ...]) -> None:
    with pytest.raises(domain.InvalidVehicle) as raised:
        domain.check_id_tags(tags)
    assert raised.value.code == "invalid_id_tags"


def test_ocpp_sized_id_tags_are_accepted() -> None:
    assert domain.check_id_tags(("04A2B3C4D5E6F7A8B9C0", "app:7f3a")) == ("04A2B3C4D5E6F7A8B9C0", "app:7f3a")
