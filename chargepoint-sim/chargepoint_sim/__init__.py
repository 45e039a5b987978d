"""cpsim: simulated OCPP 1.6J chargers that behave like independent hardware.

This package imports only ``mqtt`` from evpark (never ``edge`` or ``cloud``), so a bug shared
with the central system cannot hide on both sides.
"""

from chargepoint_sim.charger import SessionReport, SimulatedCharger
from chargepoint_sim.demo import run_demo
from chargepoint_sim.errors import (
    AuthorizationRefused,
    CentralSystemError,
    CentralSystemUnreachable,
    ConnectionLost,
    ConnectorNotAvailable,
    CpsimError,
)
from chargepoint_sim.meter import MeterSample

__all__ = [
    "AuthorizationRefused",
    "CentralSystemError",
    "CentralSystemUnreachable",
    "ConnectionLost",
    "ConnectorNotAvailable",
    "CpsimError",
    "MeterSample",
    "SessionReport",
    "SimulatedCharger",
    "run_demo",
]
