"""How a cloud service describes itself: one :class:`ServiceSpec`, exported by its package.

The registry (:mod:`cloud.registry`) lists the services; settings (ports, upstream URLs), the
gateway's routes and readiness, ``evpark serve|up|migrate``, the events catalogue and the
deploy files (``python -m evpark.manifests``) are all derived from the specs, so adding a
service is a new folder and one registry line (``cloud/README.md``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cloud.contracts.base import EventBody

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    """Lower-case identifier: ``evpark serve <name>``, the database ``{service}``, ``EVPARK_<NAME>_PORT``."""
    port: int
    """Default listen port."""
    app: str
    """``module:function`` building the FastAPI app: ``build_app(settings, *, bus=None, cache=None)``."""
    description: str
    prefixes: tuple[str, ...] = ()
    """Path prefixes the gateway routes to this service (``/charging``)."""
    public_paths: tuple[str, ...] = ()
    """Paths the gateway lets through without a token (login, registration, public keys); the
    service itself decides what they answer. Everything else needs a verified caller."""
    command_paths: tuple[str, ...] = ()
    """Path templates (``/charging/chargers/{charger_id}/reset``) whose answer waits for a charger:
    the gateway waits ``EVPARK_COMMAND_TIMEOUT_SECONDS`` (30 s) for them instead of 10 s."""
    migrations: Path | None = None
    """Alembic scripts of the service's own database."""
    publishes: tuple[type[EventBody], ...] = ()
    consumes: tuple[type[EventBody], ...] = ()
    mqtt_categories: tuple[str, ...] = ()
    """Uplink categories (``mqtt.Topics``) the service reads from every site."""
    secret_mounts: tuple[tuple[str, str, str], ...] = ()
    """``(secret, path, setting)``: files a deployment mounts read-only at ``path`` (a Kubernetes
    Secret named ``secret``; ``deploy/secrets/<secret>`` in compose) and names in ``setting``."""
    kind: Literal["service", "gateway"] = "service"
    replicas: int = 1
    """Deployment replicas (deploy/k8s). A service reading MQTT shares the uplink partitions among its replicas
    (EVPARK_INGEST=partitioned, as the manifests set it; direct ingest runs one: cloud/platform/ingest.py)."""
    resources: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "requests": {"cpu": "100m", "memory": "192Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"service name {self.name!r} must be a lower-case identifier")
        for prefix in self.prefixes:
            if not prefix.startswith("/") or prefix.count("/") != 1 or len(prefix) < 2:
                raise ValueError(f"{self.name}: prefix {prefix!r} must be one path segment like '/parking'")

    @property
    def env_name(self) -> str:
        return self.name.upper()

    @property
    def queue_prefix(self) -> str:
        """The service's RabbitMQ queues are named ``<name>.<what>``."""
        return f"{self.name}."

    def app_factory(self) -> Callable[..., FastAPI]:
        module, _, function = self.app.partition(":")
        factory: Callable[..., Any] = getattr(importlib.import_module(module), function)
        return factory

    def build_app(self, settings: Any, **adapters: Any) -> FastAPI:
        return self.app_factory()(settings, **adapters)
