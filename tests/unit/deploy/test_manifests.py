"""The files in deploy/ parse, and say what the services expect: ports, probes, limits, commands."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.registry import domain_services, specs
from cloud.registry import spec as registry_spec

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
K8S = DEPLOY / "k8s"
PORTS = {spec.name: spec.port for spec in specs()}
"""Every registered service and the gateway, with its port (cloud/registry.py)."""
SERVICES = [spec.name for spec in domain_services()]
"""The services the gateway routes to."""
GATEWAY, = (spec for spec in specs() if spec.kind == "gateway")
EDGE_OCPP_PORT = 9000
EDGE_ADMIN_PORT = 9001


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _k8s(kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in _documents(path):
            if doc.get("kind") == kind:
                found[doc["metadata"]["name"]] = doc
    return found


def _container_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = _documents(path)
    assert documents, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in documents)


def test_every_deployment_has_image_probes_and_resource_limits() -> None:
    deployments = _k8s("Deployment")
    assert set(deployments) == {*PORTS, "edge", "ingest"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        assert not pod["spec"].get("hostNetwork", False)
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        for container in pod["spec"]["containers"]:
            where = f"{name}/{container['name']}"
            assert container.get("image"), f"{where} has no image"
            assert container.get("livenessProbe"), f"{where} has no liveness probe"
            assert container.get("readinessProbe"), f"{where} has no readiness probe"
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(bound, {})), f"{where} lacks {bound}"


@pytest.mark.parametrize("service", sorted(PORTS))
def test_cloud_service_ports_and_probe_paths(service: str) -> None:
    port = PORTS[service]
    deployment = _k8s("Deployment")[service]
    pod = deployment["spec"]["template"]
    container, = pod["spec"]["containers"]
    assert container["args"] == ["serve", service]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (liveness["path"], _container_port(container, liveness["port"])) == ("/health", port)
    assert (readiness["path"], _container_port(container, readiness["port"])) == ("/ready", port)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)

    svc = _k8s("Service")[service]
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    svc_port, = svc["spec"]["ports"]
    assert svc_port["port"] == port
    assert _container_port(container, svc_port["targetPort"]) == port

    config = _k8s("ConfigMap")["evpark-config"]["data"]
    assert config[f"EVPARK_{service.upper()}_PORT"] == str(port)


def test_gateway_is_pointed_at_the_services() -> None:
    config = _k8s("ConfigMap")["evpark-config"]["data"]
    assert {"charging", "vehicles", "parking"} <= set(SERVICES)
    for name in SERVICES:
        assert config[f"EVPARK_{name.upper()}_URL"] == f"http://{name}:{PORTS[name]}"
    assert config["EVPARK_HOST"] == "0.0.0.0"


def test_migrate_job_and_edge_with_its_volume() -> None:
    job, = _k8s("Job").values()
    container, = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])

    edge = _k8s("Deployment")["edge"]
    assert edge["spec"]["replicas"] == 1 and edge["spec"]["strategy"]["type"] == "Recreate"
    pod_spec = edge["spec"]["template"]["spec"]
    container, = pod_spec["containers"]
    assert container["args"] == ["edge", "--config", "/etc/evpark/site.toml"]
    assert _container_port(container, container["livenessProbe"]["tcpSocket"]["port"]) == EDGE_OCPP_PORT
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"] if "persistentVolumeClaim" in v}
    assert claims and claims <= set(_k8s("PersistentVolumeClaim"))
    assert _k8s("Service")["edge"]["spec"]["ports"][0]["port"] == EDGE_OCPP_PORT
    # the admin API listens on the pod network for Prometheus, so it must have a token
    assert _container_port(container, "admin") == EDGE_ADMIN_PORT
    assert {"name": "EVPARK_EDGE_ADMIN_HOST", "value": "0.0.0.0"} in container["env"]
    template = {d["metadata"]["name"]: d for d in _documents(K8S / "secret.template.yaml")}
    assert "EVPARK_EDGE_ADMIN_TOKEN" in template["evpark-edge-secrets"]["stringData"]


def test_services_reading_mqtt_run_their_replicas_behind_one_ingest_bridge() -> None:
    deployments = _k8s("Deployment")
    config = _k8s("ConfigMap")["evpark-config"]["data"]
    assert config["EVPARK_INGEST"] == "partitioned"  # with direct ingest, two replicas would kick each other off
    for name, replicas in {"charging": 3, "parking": 3, "vehicles": 2}.items():
        spec = deployments[name]["spec"]
        assert spec["replicas"] == replicas
        assert spec["strategy"]["type"] == "RollingUpdate" and spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    bridge = deployments["ingest"]
    assert bridge["spec"]["replicas"] == 1 and bridge["spec"]["strategy"]["type"] == "Recreate"
    container, = bridge["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "ingest"
    assert config["EVPARK_INGEST_MQTT_USERNAME"] == "evpark-ingest"
    assert "user evpark-ingest" in (DEPLOY.parent / "mqtt" / "acl.conf").read_text()


def test_kustomization_applies_every_manifest_but_the_secret_template() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.template.yaml"}
    assert set(kustomization["resources"]) == manifests
    for path in K8S.glob("*.yaml"):
        for doc in _documents(path):
            if doc.get("kind") not in ("Namespace", "Kustomization"):
                assert doc["metadata"]["namespace"] == "evpark", f"{path.name}: {doc['kind']}"


def test_secret_template_holds_no_secret() -> None:
    for secret in _documents(K8S / "secret.template.yaml"):
        assert secret["kind"] == "Secret"
        assert all("CHANGE-ME" in value for value in secret["stringData"].values())


def test_compose_runs_every_part_with_the_right_commands_ports_and_settings() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "rabbitmq", "mosquitto", "migrate", *PORTS, "edge"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    for name in PORTS:
        assert services[name]["command"] == ["serve", name]
        env = services[name]["environment"]
        assert env["EVPARK_DATABASE_URL"].startswith("postgresql+asyncpg://evpark:")
        assert env["EVPARK_DATABASE_URL"].endswith("@postgres:5432/evpark_{service}")
        assert env["EVPARK_AMQP_URL"].startswith("amqp://") and "@rabbitmq:5672" in env["EVPARK_AMQP_URL"]
        assert "@redis:6379" in env["EVPARK_REDIS_URL"]
        assert (env["EVPARK_MQTT_HOST"], env["EVPARK_MQTT_PORT"]) == ("mosquitto", "8883")
        if registry_spec(name).mqtt_categories:  # its own broker user: client id = username on the broker
            assert env["EVPARK_MQTT_USERNAME"] == f"evpark-{name}"
        assert env[f"EVPARK_{name.upper()}_PORT"] == str(PORTS[name])
        assert str(PORTS[name]) in " ".join(services[name]["healthcheck"]["test"])
    for name in SERVICES:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    gateway = services[GATEWAY.name]
    assert gateway["ports"] == [f"{GATEWAY.port}:{GATEWAY.port}"]
    for name in SERVICES:
        assert gateway["environment"][f"EVPARK_{name.upper()}_URL"] == f"http://{name}:{PORTS[name]}"
    edge = services["edge"]
    assert edge["command"] == ["edge", "--config", "/etc/evpark/site.toml"]
    assert edge["ports"] == [f"{EDGE_OCPP_PORT}:{EDGE_OCPP_PORT}"]
    assert "./site.toml:/etc/evpark/site.toml:ro" in edge["volumes"]


def test_no_secret_is_written_into_compose() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    mqtt_passwords = [f"{spec.env_name}_MQTT_PASSWORD" for spec in specs() if spec.mqtt_categories]
    for variable in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "REDIS_PASSWORD", "SITE_MQTT_PASSWORD",
                     *mqtt_passwords):
        assert f"${{{variable}:?" in text, f"{variable} must come from the environment, required"


def test_site_file_is_valid_edge_settings() -> None:
    from edge.settings import EdgeSettings

    settings = EdgeSettings.from_toml(DEPLOY / "site.toml")
    assert settings.ocpp_port == EDGE_OCPP_PORT
    assert (settings.mqtt_host, settings.mqtt_port, settings.mqtt_tls) == ("mosquitto", 8883, True)
    assert settings.mqtt_username == settings.site_id
    in_cluster = _k8s("ConfigMap")["evpark-edge-site"]["data"]["site.toml"]
    assert "ocpp_port = 9000" in in_cluster


def test_dockerfile_runs_evpark_as_a_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert 'ENTRYPOINT ["evpark"]' in text


def test_prometheus_scrapes_metrics_of_every_service_on_its_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {f"evpark-{name}" for name in [*PORTS, "edge"]}
    for name, port in {**PORTS, "edge": EDGE_ADMIN_PORT}.items():
        job = jobs[f"evpark-{name}"]
        assert job["metrics_path"] == "/metrics"
        keeps = {rule["source_labels"][0]: rule["regex"] for rule in job["relabel_configs"]
                 if rule.get("action") == "keep"}
        assert keeps["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == name
        assert keeps["__meta_kubernetes_pod_container_port_number"] == str(port)


def test_grafana_dashboard_queries_only_metrics_the_services_export() -> None:
    from prometheus_client import REGISTRY

    import cloud.platform.metrics  # noqa: F401  (registers the metrics)
    import edge.metrics  # noqa: F401

    exported = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    dashboard = json.loads((DEPLOY / "grafana" / "evpark.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert expressions
    used = {m for expr in expressions for m in re.findall(r"\bevpark_[a-z_]+", expr)}
    assert used <= exported, f"unknown metrics: {used - exported}"
    assert {"evpark_http_requests_total", "evpark_http_request_duration_seconds_bucket",
            "evpark_outbox_backlog", "evpark_messages_consumed_total", "evpark_edge_outbox_backlog",
            "evpark_edge_outbox_oldest_age_seconds", "evpark_edge_outbox_dropped_total"} <= used
