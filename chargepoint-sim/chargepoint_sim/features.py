"""The state behind the optional feature profiles of a simulated charger; pure, no I/O.

* ``SmartCharging`` — installed charging profiles (OCPP 1.6 §3.13) and the power limit they put
  on a connector now; the charger's meter never delivers more than that limit.
* ``LocalAuthList`` — the Local Authorization List (§3.5), versioned, full or differential.

Payloads arrive as the ``ocpp`` library hands them to handlers: snake_case dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

VOLTS = 230.0
"""Line-to-neutral voltage used to turn an ampere limit into watts."""
DEFAULT_PHASES = 3

MAX_STACK_LEVEL = 10
MAX_SCHEDULE_PERIODS = 24
MAX_PROFILES = 10
LOCAL_LIST_MAX = 100


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class _Profile:
    connector_id: int
    body: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.body["charging_profile_id"])

    @property
    def purpose(self) -> str:
        return str(self.body["charging_profile_purpose"])

    @property
    def stack_level(self) -> int:
        return int(self.body["stack_level"])


@dataclass
class SmartCharging:
    """Charging profiles installed on one charger."""

    profiles: dict[int, _Profile] = field(default_factory=dict)

    def set(self, connector_id: int, profile: dict[str, Any], *, transaction_id: int | None,
            connector_ids: set[int]) -> str:
        """Install a profile; the status for SetChargingProfile.conf (Accepted or Rejected)."""
        purpose = profile.get("charging_profile_purpose")
        schedule = profile.get("charging_schedule") or {}
        periods = schedule.get("charging_schedule_period") or []
        if connector_id != 0 and connector_id not in connector_ids:
            return "Rejected"
        if purpose == "ChargePointMaxProfile" and connector_id != 0:
            return "Rejected"  # §3.13.1: ChargePointMaxProfile only on connector 0
        if purpose == "TxProfile":
            # §5.16: a TxProfile needs a transaction on that connector (and the same id if named).
            if connector_id == 0 or transaction_id is None:
                return "Rejected"
            if profile.get("transaction_id") not in (None, transaction_id):
                return "Rejected"
        if int(profile.get("stack_level", 0)) > MAX_STACK_LEVEL or len(periods) > MAX_SCHEDULE_PERIODS:
            return "Rejected"
        if not periods or schedule.get("charging_rate_unit") not in ("A", "W"):
            return "Rejected"
        replaced = [p.id for p in self.profiles.values()
                    if p.id == profile["charging_profile_id"]
                    or (p.connector_id == connector_id and p.purpose == purpose
                        and p.stack_level == int(profile["stack_level"]))]
        if len(self.profiles) - len(replaced) >= MAX_PROFILES:
            return "Rejected"
        for old in replaced:
            del self.profiles[old]
        self.profiles[int(profile["charging_profile_id"])] = _Profile(connector_id, dict(profile))
        return "Accepted"

    def clear(self, *, profile_id: int | None = None, connector_id: int | None = None,
              purpose: str | None = None, stack_level: int | None = None) -> str:
        """Remove matching profiles; Accepted if any went, else Unknown (ClearChargingProfile.conf)."""
        if profile_id is not None:
            gone = [profile_id] if profile_id in self.profiles else []
        else:
            gone = [p.id for p in self.profiles.values()
                    if (connector_id is None or p.connector_id == connector_id)
                    and (purpose is None or p.purpose == purpose)
                    and (stack_level is None or p.stack_level == stack_level)]
        for key in gone:
            del self.profiles[key]
        return "Accepted" if gone else "Unknown"

    def end_transaction(self, connector_id: int) -> None:
        """A TxProfile lives as long as its transaction (§3.13.2)."""
        for key in [p.id for p in self.profiles.values()
                    if p.purpose == "TxProfile" and p.connector_id == connector_id]:
            del self.profiles[key]

    def limit_w(self, connector_id: int, *, now: datetime, transaction_started: datetime | None) -> float | None:
        """The power limit on a connector now; None when no profile applies."""
        limits: list[float] = []
        charger_max = self._top("ChargePointMaxProfile", [0], now, transaction_started)
        if charger_max is not None:
            limits.append(charger_max)
        if transaction_started is not None:
            # TxProfile beats TxDefaultProfile; a connector-specific default beats the one on connector 0.
            for purpose, connectors in (("TxProfile", [connector_id]), ("TxDefaultProfile", [connector_id]),
                                        ("TxDefaultProfile", [0])):
                value = self._top(purpose, connectors, now, transaction_started)
                if value is not None:
                    limits.append(value)
                    break
        return min(limits) if limits else None

    def _top(self, purpose: str, connectors: list[int], now: datetime,
             transaction_started: datetime | None) -> float | None:
        candidates = sorted((p for p in self.profiles.values()
                             if p.purpose == purpose and p.connector_id in connectors),
                            key=lambda p: p.stack_level, reverse=True)
        for profile in candidates:
            value = _limit_now(profile.body, now, transaction_started)
            if value is not None:
                return value
        return None


def _limit_now(profile: dict[str, Any], now: datetime, transaction_started: datetime | None) -> float | None:
    valid_from, valid_to = _parse_time(profile.get("valid_from")), _parse_time(profile.get("valid_to"))
    if (valid_from is not None and now < valid_from) or (valid_to is not None and now >= valid_to):
        return None
    schedule = profile["charging_schedule"]
    kind = profile.get("charging_profile_kind", "Absolute")
    start = _parse_time(schedule.get("start_schedule"))
    if kind == "Relative" or start is None:
        start = transaction_started or now
    elapsed = (now - start).total_seconds()
    if kind == "Recurring" and profile.get("recurrency_kind") in ("Daily", "Weekly"):
        cycle = 86_400 if profile["recurrency_kind"] == "Daily" else 7 * 86_400
        elapsed %= cycle
    duration = schedule.get("duration")
    if elapsed < 0 or (duration is not None and elapsed >= duration):
        return None
    current = None
    for period in sorted(schedule["charging_schedule_period"], key=lambda p: p["start_period"]):
        if period["start_period"] <= elapsed:
            current = period
    if current is None:
        return None
    limit = float(current["limit"])
    if schedule["charging_rate_unit"] == "A":
        limit *= VOLTS * int(current.get("number_phases") or DEFAULT_PHASES)
    return limit


@dataclass
class LocalAuthList:
    """The Local Authorization List: id tag → status, with the version the central system gave."""

    version: int = 0
    entries: dict[str, str] = field(default_factory=dict)

    def update(self, version: int, update_type: str, items: list[dict[str, Any]] | None) -> str:
        """Apply SendLocalList; the status for SendLocalList.conf."""
        items = items or []
        if len(items) > LOCAL_LIST_MAX:
            return "Failed"
        if update_type == "Full":
            self.entries = {item["id_tag"]: (item.get("id_tag_info") or {}).get("status", "Accepted")
                            for item in items if item.get("id_tag_info") is not None}
        elif update_type == "Differential":
            if version <= self.version:
                return "VersionMismatch"  # §5.15: a differential update must be newer
            for item in items:
                info = item.get("id_tag_info")
                if info is None:
                    self.entries.pop(item["id_tag"], None)
                else:
                    self.entries[item["id_tag"]] = info.get("status", "Accepted")
            if len(self.entries) > LOCAL_LIST_MAX:
                return "Failed"
        else:
            return "Failed"
        self.version = version
        return "Accepted"
