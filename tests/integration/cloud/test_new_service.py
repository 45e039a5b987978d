"""A service added as cloud/README.md says — its folder and one registry line — is part of the system.

The gateway routes to it, `evpark up` starts it and delivers it the events it consumes, `evpark
migrate` creates its database, the gateway's readiness lists it, and the deploy files include it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cloud.registry import specs
from evpark.up import UpOptions, run_up
from tests.support import services
from tests.support.new_service import added_service, guide_files
from tests.support.waiting import eventually


@pytest.fixture
def valet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with added_service("valet", guide_files(), tmp_path / "ext", monkeypatch) as package:
        yield package


def test_the_guide_service_is_in_the_registry_with_its_spec(valet: Path) -> None:
    spec = {s.name: s for s in specs()}["valet"]
    assert spec.prefixes == ("/valet",) and spec.migrations == valet / "migrations"
    assert [m.NAME for m in spec.consumes] == ["vehicle.registered"]


def test_evpark_migrate_creates_the_new_services_database(valet: Path, tmp_path: Path) -> None:
    from evpark.cli import app

    data = tmp_path / "data"
    result = CliRunner().invoke(app, ["migrate"], env={"EVPARK_DATA_DIR": str(data), "EVPARK_DATABASE_URL": ""})
    assert result.exit_code == 0, result.output
    assert "valet: schema up to date" in result.output
    with sqlite3.connect(data / "valet.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"valet_plates", "outbox", "inbox", "parked_messages"} <= tables


def test_the_deploy_files_include_the_new_service(valet: Path) -> None:
    from evpark.manifests import render

    rendered = render()
    compose = next(text for path, text in rendered.items() if path.name == "compose.yaml")
    assert "serve\", \"valet\"" in compose or "- valet" in compose or "valet:" in compose
    assert any(path.name == "valet.yaml" for path in rendered), sorted(str(p) for p in rendered)
    prometheus = next(text for path, text in rendered.items() if path.name == "prometheus.yml")
    assert "evpark-valet" in prometheus


async def test_evpark_up_starts_routes_and_feeds_the_new_service(valet: Path, tmp_path: Path) -> None:
    ports = {spec.name: services.free_port() for spec in specs()}
    options = UpOptions(data_dir=tmp_path / "up", service_ports=ports, ocpp_port=services.free_port(),
                        admin_port=services.free_port(), mqtt_port=services.free_port(), site_id="valet-site")
    stop, ready = asyncio.Event(), asyncio.Event()
    system = asyncio.create_task(run_up(options, stop=stop, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['gateway']}", timeout=10) as gateway:
            admin_file = tmp_path / "up" / "admin-password"
            assert admin_file.stat().st_mode & 0o777 == 0o600, "the admin's password is for its owner only"
            email, password = admin_file.read_text().split()
            assert email == "admin@evpark.local"
            login = await gateway.post("/auth/login", json={"email": email, "password": password})
            gateway.headers["authorization"] = f"Bearer {login.json()['access_token']}"
            registered = await gateway.post("/vehicles/register", json={"plate": "val 1", "id_tags": ["VALTAG01"]})
            assert registered.status_code == 201, registered.text

            async def plates() -> list[str]:
                answer = await gateway.get("/valet/plates")
                assert answer.status_code == 200, answer.text
                return list(answer.json()["plates"])

            await eventually(lambda: plates(), what="the valet service saw vehicle.registered")
            assert await plates() == ["VAL-1"]
            readiness = await gateway.get("/ready")
            assert readiness.status_code == 200, readiness.text
            assert readiness.json()["checks"]["valet"] is True
        async with httpx.AsyncClient(timeout=10) as client:
            direct = await client.get(f"http://127.0.0.1:{ports['valet']}/ready")
        assert direct.json()["checks"]["loop:outbox-relay"] is True
    finally:
        stop.set()
        await asyncio.wait_for(system, 30)
