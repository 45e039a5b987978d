"""The registry of cloud services: one line per service, in start order.

Each name is a package ``cloud/<name>/`` exporting ``SPEC`` (:class:`cloud.platform.spec.ServiceSpec`).
Everything that lists services (settings, gateway routes, ``evpark serve|up|migrate``,
readiness, the events catalogue, deploy files) reads it from here.
"""

from __future__ import annotations

import importlib

from cloud.platform.spec import ServiceSpec

SERVICES: list[str] = [
    "accounts",
    "vehicles",
    "charging",
    "parking",
    "payments",
    "analytics",
    "notifications",
    "gateway",
]


def specs() -> list[ServiceSpec]:
    """Every registered service's spec, in registry order."""
    found = []
    for name in SERVICES:
        spec = getattr(importlib.import_module(f"cloud.{name}"), "SPEC", None)
        if not isinstance(spec, ServiceSpec) or spec.name != name:
            raise RuntimeError(f"cloud.{name} must export SPEC = ServiceSpec(name={name!r}, ...)")
        found.append(spec)
    return found


def spec(name: str) -> ServiceSpec:
    for candidate in specs():
        if candidate.name == name:
            return candidate
    raise KeyError(f"no service {name!r} in the registry (cloud/registry.py)")


def domain_services() -> list[ServiceSpec]:
    """The services with a database of their own (everything but the gateway)."""
    return [s for s in specs() if s.kind == "service"]
