"""Vehicle registry rules, free of I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloud.platform.errors import DomainError

# OCPP 1.6 idTag is CiString20; cards print hex UIDs, apps use tokens: printable ASCII only.
_ID_TAG = re.compile(r"^[\x21-\x7e]{1,20}$")
_PLATE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,14}[A-Z0-9]$|^[A-Z0-9]$")

MAX_ID_TAGS = 10


class InvalidVehicle(DomainError):
    title = "Invalid vehicle"


@dataclass(frozen=True)
class RegisterVehicle:
    """Command: register a vehicle with the RFID idTags that may charge it."""

    plate: str
    id_tags: tuple[str, ...]
    make: str | None = None
    model: str | None = None


def normalise_plate(plate: str) -> str:
    cleaned = " ".join(plate.upper().split())
    if not _PLATE.fullmatch(cleaned):
        raise InvalidVehicle(f"plate {plate!r} must be 1-16 letters, digits, spaces or dashes",
                             code="invalid_plate")
    return cleaned


def check_id_tags(id_tags: tuple[str, ...]) -> tuple[str, ...]:
    if not id_tags:
        raise InvalidVehicle("id_tags must name at least one idTag", code="invalid_id_tags")
    if len(id_tags) > MAX_ID_TAGS:
        raise InvalidVehicle(f"id_tags may name at most {MAX_ID_TAGS} idTags", code="invalid_id_tags")
    for tag in id_tags:
        if not _ID_TAG.fullmatch(tag):
            raise InvalidVehicle(f"idTag {tag!r} must be 1-20 printable ASCII characters without spaces",
                                 code="invalid_id_tags")
    if len(set(id_tags)) != len(id_tags):
        raise InvalidVehicle("id_tags lists the same idTag twice", code="invalid_id_tags")
    return id_tags
