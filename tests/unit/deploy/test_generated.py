"""The deploy files that list services are generated from the registry, and the registry is complete.

Regenerate with ``python -m evpark.manifests`` (see :mod:`evpark.manifests`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi import FastAPI

from cloud.platform.settings import CloudSettings
from cloud.platform.spec import ServiceSpec
from cloud.registry import SERVICES, domain_services, specs
from evpark import manifests

ROOT = Path(__file__).resolve().parents[3]
REGENERATE = "python -m evpark.manifests"
PLATFORM_PATHS = {"/health", "/ready", "/metrics"}
SERVICE_PATHS = {"/status"}
"""Served by every domain service but not the gateway (ops figures for the cluster, never public)."""
NOT_SERVICES = {"platform"}
"""Folders of ``cloud/`` with an ``app.py`` that are no service (the platform's app factory)."""

VALET = ServiceSpec(name="valet", port=8199, app="x:y", description="Valet parking: keys handed over at the desk.",
                    prefixes=("/valet",), migrations=Path("cloud/valet/migrations"))


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


# -- (a) the files on disk are what the registry says ------------------------------------------


def test_the_generator_writes_into_the_repository() -> None:
    assert manifests.ROOT == ROOT


@pytest.mark.parametrize("path", sorted(manifests.render()), ids=str)
def test_generated_file_matches_the_registry(path: Path) -> None:
    expected = manifests.render()[path]
    on_disk = ROOT / path
    assert on_disk.exists(), f"{path} is missing: run `{REGENERATE}`"
    assert on_disk.read_text(encoding="utf-8") == expected, (
        f"{path} differs from what cloud/registry.py says: run `{REGENERATE}` (do not edit it by hand)")


def test_no_generated_file_is_left_from_a_removed_service() -> None:
    left = manifests.stale(manifests.render())
    assert not left, f"{', '.join(map(str, left))} belong to no registered service: run `{REGENERATE}`"


def test_every_generated_file_says_so_and_parses() -> None:
    for path, text in manifests.render().items():
        assert text.startswith(manifests.MARKER + "\n"), path
        assert _documents(text), path


def test_rendering_is_deterministic_and_leaves_the_hand_written_files_alone() -> None:
    first, second = manifests.render(), manifests.render(specs())
    assert first == second
    generated = {path.name for path in first if path.parent == manifests.K8S}
    assert not generated & {"namespace.yaml", "migrate-job.yaml", "edge.yaml", "secret.template.yaml"}
    for name in ("namespace.yaml", "migrate-job.yaml", "edge.yaml", "secret.template.yaml"):
        assert not (ROOT / "deploy" / "k8s" / name).read_text(encoding="utf-8").startswith(manifests.MARKER)


def test_check_reports_a_file_that_differs_and_the_command(tmp_path: Path) -> None:
    files = manifests.render()
    assert manifests.write(files, tmp_path) == list(files)
    assert manifests.differences(files, tmp_path) == []
    (tmp_path / "deploy" / "k8s" / "gateway.yaml").write_text("# edited by hand\n", encoding="utf-8")
    (tmp_path / "deploy" / "k8s" / "valet.yaml").write_text(manifests.MARKER + "\n", encoding="utf-8")
    assert manifests.differences(files, tmp_path) == [
        "deploy/k8s/gateway.yaml: differs from the registry",
        "deploy/k8s/valet.yaml: generated for a service no longer in the registry",
    ]
    assert set(manifests.write(files, tmp_path)) == {Path("deploy/k8s/gateway.yaml"), Path("deploy/k8s/valet.yaml")}
    assert manifests.differences(files, tmp_path) == []


def test_check_command_exits_1_and_names_the_command(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert manifests.main(["--check"]) == 0
    monkeypatch.setattr(manifests, "render", lambda specs=None: {Path("deploy/k8s/nowhere.yaml"): "x\n"})
    assert manifests.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "deploy/k8s/nowhere.yaml: missing" in err and REGENERATE in err


def test_specs_that_cannot_be_deployed_are_refused() -> None:
    with pytest.raises(ValueError, match="ingest bridge"):
        manifests.render([dataclasses.replace(VALET, name="ingest")])
    with pytest.raises(ValueError, match="port 8199 is taken"):
        manifests.render([VALET, dataclasses.replace(VALET, name="valet2")])
    with pytest.raises(ValueError, match="hand-written"):
        manifests.render([dataclasses.replace(VALET, name="edge")])


# -- (b) one more spec is all a new service needs ----------------------------------------------


def test_a_new_spec_gets_every_deploy_entry_and_changes_nothing_else() -> None:
    before = manifests.render()
    after = manifests.render([*specs(), VALET])
    k8s = Path("deploy/k8s")
    assert set(after) == {*before, k8s / "valet.yaml"}

    # compose: a service entry like the others; the gateway points at it and waits for it
    old = yaml.safe_load(before[Path("deploy/compose.yaml")])
    new = yaml.safe_load(after[Path("deploy/compose.yaml")])
    valet = new["services"].pop("valet")
    assert valet["command"] == ["serve", "valet"]
    assert valet["environment"]["EVPARK_VALET_PORT"] == "8199"
    assert valet["expose"] == ["8199"]
    assert "127.0.0.1:8199/ready" in " ".join(valet["healthcheck"]["test"])
    assert valet["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    plain = next(spec.name for spec in domain_services() if not spec.secret_mounts)  # like valet: no secret files
    reference = dict(new["services"][plain])
    assert {k: v for k, v in valet.items() if k not in ("command", "environment", "expose", "healthcheck")} == {
        k: v for k, v in reference.items() if k not in ("command", "environment", "expose", "healthcheck")}
    gateway = new["services"]["gateway"]
    assert gateway["environment"].pop("EVPARK_VALET_URL") == "http://valet:8199"
    assert gateway["depends_on"].pop("valet") == {"condition": "service_healthy"}
    assert new == old

    # Prometheus: one more job
    old = yaml.safe_load(before[Path("deploy/prometheus/prometheus.yml")])
    new = yaml.safe_load(after[Path("deploy/prometheus/prometheus.yml")])
    jobs = {job["job_name"]: job for job in new["scrape_configs"]}
    keeps = {rule["source_labels"][0]: rule["regex"] for rule in jobs["evpark-valet"]["relabel_configs"]
             if rule.get("action") == "keep"}
    assert keeps["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == "valet"
    assert keeps["__meta_kubernetes_pod_container_port_number"] == "8199"
    new["scrape_configs"] = [job for job in new["scrape_configs"] if job["job_name"] != "evpark-valet"]
    assert new == old

    # Kubernetes: a Deployment and a Service, its port and URL in the ConfigMap, one more resource
    deployment, service = _documents(after[k8s / "valet.yaml"])
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "valet"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"  # it reads no MQTT
    container, = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["serve", "valet"]
    assert container["ports"] == [{"name": "http", "containerPort": 8199, "protocol": "TCP"}]
    assert container["resources"] == VALET.resources
    assert service["spec"]["ports"][0]["port"] == 8199

    old_map, old_site = _documents(before[k8s / "configmap.yaml"])
    new_map, new_site = _documents(after[k8s / "configmap.yaml"])
    assert new_map["data"].pop("EVPARK_VALET_PORT") == "8199"
    assert new_map["data"].pop("EVPARK_VALET_URL") == "http://valet:8199"
    assert (new_map, new_site) == (old_map, old_site)

    old = yaml.safe_load(before[k8s / "kustomization.yaml"])
    new = yaml.safe_load(after[k8s / "kustomization.yaml"])
    new["resources"].remove("valet.yaml")
    assert new == old

    # every other service's manifests are untouched (the gateway's header comment names its upstreams)
    for spec in specs():
        assert _documents(after[k8s / f"{spec.name}.yaml"]) == _documents(before[k8s / f"{spec.name}.yaml"])
        if spec.kind == "service":
            assert after[k8s / f"{spec.name}.yaml"] == before[k8s / f"{spec.name}.yaml"]


# -- (c) the registry is complete and every service has what the platform expects ---------------


def registry_problems(candidates: list[ServiceSpec], settings: CloudSettings, cloud: Path,
                      registered: list[str]) -> list[str]:
    """What a registered service lacks, and every ``cloud/<x>/app.py`` missing from the registry."""
    problems = []
    for spec in candidates:
        if spec.kind == "service":
            if spec.migrations is None or not (spec.migrations / "env.py").is_file():
                problems.append(f"{spec.name}: no migrations (ServiceSpec.migrations with an Alembic env.py)")
            if not spec.prefixes:
                problems.append(f"{spec.name}: no prefixes, so the gateway routes nothing to it")
        app = spec.build_app(settings)
        assert isinstance(app, FastAPI), spec.name
        paths = {getattr(route, "path", None) for route in app.routes}
        for path in sorted((PLATFORM_PATHS | (SERVICE_PATHS if spec.kind == "service" else set())) - paths):
            problems.append(f"{spec.name}: its app serves no {path}")
    for folder in sorted(p.parent for p in cloud.glob("*/app.py")):
        if folder.name not in registered and folder.name not in NOT_SERVICES:
            problems.append(f"cloud/{folder.name}/ has an app.py but is not in cloud.registry.SERVICES")
    return problems


@pytest.fixture
def settings(tmp_path: Path) -> CloudSettings:
    return CloudSettings(data_dir=tmp_path)


def test_every_registered_service_has_migrations_routes_and_platform_endpoints(settings: CloudSettings) -> None:
    assert registry_problems(specs(), settings, ROOT / "cloud", SERVICES) == []


def bare_app(settings: CloudSettings, **adapters: Any) -> FastAPI:
    """A service app without the platform's endpoints (for the test below)."""
    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def test_the_registry_check_finds_what_is_missing(settings: CloudSettings, tmp_path: Path) -> None:
    cloud = tmp_path / "cloud"
    for name in ("valet", "lonely", "platform"):
        (cloud / name).mkdir(parents=True)
    (cloud / "valet" / "app.py").touch()
    (cloud / "lonely" / "app.py").touch()
    (cloud / "platform" / "app.py").touch()
    broken = dataclasses.replace(VALET, app=f"{__name__}:bare_app", prefixes=(), migrations=tmp_path / "none")
    assert registry_problems([broken], settings, cloud, ["valet"]) == [
        "valet: no migrations (ServiceSpec.migrations with an Alembic env.py)",
        "valet: no prefixes, so the gateway routes nothing to it",
        "valet: its app serves no /metrics",
        "valet: its app serves no /ready",
        "valet: its app serves no /status",
        "cloud/lonely/ has an app.py but is not in cloud.registry.SERVICES",
    ]
