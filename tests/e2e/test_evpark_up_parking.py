"""`evpark up` on a fresh machine: the edge runs the bundled demo site, so the lot's status and
reservations work at once; `--site FILE` runs the operator's own file instead (a broken one is
refused with its line, before anything starts)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import embedded
from tests.e2e.harness import EVPARK, register_vehicle
from tests.e2e.test_site_sensors import poll

pytestmark = pytest.mark.e2e


async def test_the_demo_site_has_bays_of_each_type_and_takes_reservations(tmp_path: Path) -> None:
    system = embedded(tmp_path)
    try:
        system.wait_healthy(120)
        async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=10) as http:
            status = await poll(http, "/parking/status?site_id=demo-site", lambda b: len(b["slots"]) == 9, 30)
            assert {kind: sum(per.values()) for kind, per in status["by_type"].items()} == {
                "ev": 4, "regular": 4, "accessible": 1}
            assert {s["charger_id"] for s in status["slots"] if s["type"] == "ev"} == {"CP-1", "CP-2"}
            vehicle_id = await register_vehicle(system, "UP-1", ["TAGUP1"])
            start = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

            async def reserve() -> httpx.Response:
                return await http.post("/parking/reserve", json={
                    "vehicle_id": vehicle_id, "site_id": "demo-site", "bay_type": "ev",
                    "starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()})

            made = await reserve()
            for _ in range(50):  # the vehicle's registration reaches parking through the event bus
                if made.status_code != 404:
                    break
                made = await reserve()
            assert made.status_code == 201, made.text
            assert made.json()["bay_id"] == "EV-1"
    finally:
        system.stop()


def test_a_broken_site_file_is_refused_with_its_line(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('site_id = "mine"\n\n[[bays]]\nid = "B-1"\ntype = "garage"\n', encoding="utf-8")
    result = subprocess.run([EVPARK, "up", "--data-dir", str(tmp_path / "data"), "--site", str(site)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "site.toml" in result.stderr and "type" in result.stderr
    assert "Traceback" not in result.stderr
