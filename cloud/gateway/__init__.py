"""The API gateway: the one front door; routes each registered service's prefixes to it."""

from cloud.platform.spec import ServiceSpec

SPEC = ServiceSpec(
    name="gateway",
    port=8000,
    app="cloud.gateway.app:build_app",
    description="The one front door: authenticates, rate-limits and routes to the services.",
    kind="gateway",
    replicas=2,
    resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "384Mi"}},
)
