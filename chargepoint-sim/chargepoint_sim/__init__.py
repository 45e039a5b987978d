"""cpsim: simulated OCPP 1.6J chargers and bay sensors that behave like independent hardware.

``SimulatedCharger`` (charger.py) plays one charger with every feature profile (one module each in
``profiles/``) and the faults of ``Faults``; ``scenario`` plays YAML scenarios with ``sensors``
(Modbus TCP, MQTT); ``load`` drives thousands of lean chargers; ``shell`` is the technician's
hand-driven charger.

This package imports only ``mqtt`` from evpark (never ``edge`` or ``cloud``), so a bug shared
with the central system cannot hide on both sides.
"""

from chargepoint_sim.charger import Faults, SessionReport, SimulatedCharger
from chargepoint_sim.demo import run_demo
from chargepoint_sim.errors import (
    AuthorizationRefused,
    CentralSystemError,
    CentralSystemUnreachable,
    ConnectionLost,
    ConnectorNotAvailable,
    CpsimError,
)
from chargepoint_sim.load import LoadOptions, LoadStats, run_load, run_load_processes
from chargepoint_sim.meter import MeterSample
from chargepoint_sim.scenario import PlayReport, Scenario, ScenarioError, load_scenario, parse_scenario, play_scenario
from chargepoint_sim.sensors import ModbusPoint, ModbusSensors, MqttSensors

__all__ = [
    "AuthorizationRefused",
    "CentralSystemError",
    "CentralSystemUnreachable",
    "ConnectionLost",
    "ConnectorNotAvailable",
    "CpsimError",
    "Faults",
    "LoadOptions",
    "LoadStats",
    "MeterSample",
    "ModbusPoint",
    "ModbusSensors",
    "MqttSensors",
    "PlayReport",
    "Scenario",
    "ScenarioError",
    "SessionReport",
    "SimulatedCharger",
    "load_scenario",
    "parse_scenario",
    "play_scenario",
    "run_demo",
    "run_load",
    "run_load_processes",
]
