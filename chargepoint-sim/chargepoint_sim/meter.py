"""The energy meter of a simulated connector: how fast energy flows during a session.

Pure functions, no I/O. A session delivers ``energy_wh`` at ``power_w`` until 80% of it is in,
then the power tapers linearly (as a battery nearing full does) down to a floor of 10% of
``power_w``, so that every session ends. Simulated time may run faster than wall time: each
sample advances the energy by ``power * simulated_interval_s / 3600``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

TAPER_FROM = 0.8
"""Fraction of the session's energy after which the power starts to fall."""

TAPER_FLOOR = 0.1
"""The tapered power never drops below this fraction of the full power."""


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One periodic reading during a session."""

    register_wh: int
    """The connector's energy register (Energy.Active.Import.Register) after this sample."""
    energy_wh: int
    """Energy delivered in this session so far."""
    target_wh: int
    """Energy the session was asked to deliver."""
    power_w: float
    """Power during the interval that ended with this sample (Power.Active.Import)."""


def power_at(delivered_wh: float, target_wh: int, power_w: float) -> float:
    """The charging power once ``delivered_wh`` of ``target_wh`` are in."""
    if target_wh <= 0:
        return 0.0
    fraction = delivered_wh / target_wh
    if fraction < TAPER_FROM:
        return power_w
    remaining = max(0.0, 1.0 - fraction) / (1.0 - TAPER_FROM)
    return power_w * max(TAPER_FLOOR, remaining)


def charging_curve(meter_start_wh: int, energy_wh: int, power_w: float,
                   simulated_interval_s: float,
                   power_limit: Callable[[], float | None] | None = None) -> Iterator[MeterSample]:
    """The samples of a session from ``meter_start_wh`` until exactly ``energy_wh`` is delivered.

    ``power_limit`` is asked before every sample (a charging profile's limit now, None: no
    limit); the power never exceeds it. A limit of 0 suspends charging (no energy flows).
    """
    if energy_wh < 0:
        raise ValueError("energy_wh must not be negative")
    if power_w <= 0:
        raise ValueError("power_w must be positive")
    if simulated_interval_s <= 0:
        raise ValueError("the simulated meter interval must be positive")
    delivered = 0.0
    while delivered < energy_wh:
        power = power_at(delivered, energy_wh, power_w)
        limit = power_limit() if power_limit is not None else None
        if limit is not None:
            power = max(0.0, min(power, limit))
        # The last step lands exactly on the target, so meterStop - meterStart == energy_wh.
        delivered = min(float(energy_wh), delivered + power * simulated_interval_s / 3600.0)
        energy = energy_wh if delivered >= energy_wh else int(delivered)
        yield MeterSample(register_wh=meter_start_wh + energy, energy_wh=energy, target_wh=energy_wh,
                          power_w=power)
