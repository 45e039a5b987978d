"""Notifications end to end (production mode, every part its own process): a cpsim car that is full while
plugged in → charging.energy_finished → within 2 s the driver's in-app list and mailbox (a real aiosmtpd
server) say "charging complete — move within N minutes or an idle fee of X/min starts", with N and X from
the site's tariff. The driver's quiet hours (set through the gateway, covering now) do not hold that warning
(critical) but hold the session's "charging started" e-mail (in-app shows it at once), which goes out as
soon as the driver's quiet hours end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiosmtpd.controller import Controller

from tests.e2e.harness import LibCharger, authorize_when_known, boot, connect_charger
from tests.e2e.test_remote_charging import Running, cpsim, driver, running
from tests.integration.cloud.test_notifications_delivery import Mailbox
from tests.support.services import free_port

pytestmark = pytest.mark.e2e
__all__ = ["running"]

TARIFF = {"site_id": "e2e-site", "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
          "elements": [{"components": [{"type": "energy", "price": "0.40", "step_size": 1},
                                       {"type": "idle", "price": "0.15", "grace_minutes": 8}]}]}


@pytest.fixture(autouse=True)
def mailbox(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    monkeypatch.setenv("EVPARK_NOTIFICATIONS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("EVPARK_NOTIFICATIONS_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("EVPARK_NOTIFICATIONS_SMTP_SECURITY", "none")
    try:
        yield box
    finally:
        controller.stop()


async def test_a_full_car_tells_the_driver_in_app_and_by_mail_within_2_s(running: Running,
                                                                         mailbox: Mailbox) -> None:
    system = running.system
    me = await driver(system)
    async with httpx.AsyncClient(base_url=system.gateway, headers=me, timeout=40) as app, \
            httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=40) as admin, \
            connect_charger(system.ocpp, "CP-AUTH", LibCharger) as auth_probe, \
            cpsim(system, "CP-1", remote_session_energy_wh=300) as cp1:
        made = await app.post("/vehicles/register", json={"plate": "E2E-FULL", "id_tags": ["TAGFULL"]})
        assert made.status_code == 201, made.text
        vehicle = made.json()["vehicle_id"]
        assert (await admin.put("/billing/rates/e2e-site", json=TARIFF)).status_code == 200
        await boot(auth_probe)
        await authorize_when_known(auth_probe, "TAGFULL", limit_s=30)

        async def station_up() -> bool:
            answer = await app.get("/charging/stations?site_id=e2e-site")
            shown = {s["charger_id"]: s for s in answer.json().get("stations", [])} if answer.status_code == 200 \
                else {}
            return "CP-1" in shown and shown["CP-1"]["online"] and bool(shown["CP-1"]["connectors"])

        await running.until("CP-1 online", station_up)
        # quiet hours around now, in the driver's time zone (minutes: the window holds for an hour either way)
        zone = ZoneInfo((await app.get("/notifications/preferences")).json()["time_zone"])
        local = datetime.now(UTC).astimezone(zone)
        quiet = {"start": f"{local - timedelta(hours=1):%H:%M}", "end": f"{local + timedelta(hours=1):%H:%M}"}
        put = await app.put("/notifications/preferences", json={"quiet_hours": quiet})
        assert put.status_code == 200 and put.json()["quiet_hours"] == quiet, put.text
        cp1.faults.stay_plugged = True
        start = {"vehicle_id": vehicle, "site_id": "e2e-site", "charger_id": "CP-1", "connector_id": 1}
        assert (await app.post("/charging/start", json=start)).json()["status"] == "Accepted"
        await running.until("charging.energy_finished", lambda: running.named("charging.energy_finished"), 60)
        seen = time.monotonic()

        async def told() -> bool:
            inbox = (await app.get("/notifications")).json()
            kinds = [i["kind"] for i in inbox.get("items", [])]
            return "charging.energy_finished" in kinds and any("move your car" in s for s in mailbox.subjects())

        while not await told():
            assert time.monotonic() - seen < 2.0, f"not told within 2 s, quiet hours or not\n{system.logs()}"
            await asyncio.sleep(0.05)
        items = (await app.get("/notifications")).json()["items"]
        item = next(i for i in items if i["kind"] == "charging.energy_finished")
        assert "move within 8 minutes or an idle fee of 0.15 EUR/min starts" in item["body"]
        assert (await app.post(f"/notifications/{item['id']}/read")).status_code == 200
        message = cast(EmailMessage, next(m for m in mailbox.messages if "move your car" in str(m["Subject"])))
        assert message["To"] == "driver@e2e.example"
        plain = message.get_body(("plain",))
        assert plain is not None and "move within 8 minutes or an idle fee of 0.15 EUR/min starts" in \
            plain.get_content()

        # the session's start is in the in-app list (shown at once), and its e-mail, not critical, waits
        assert "charging.started" in [i["kind"] for i in items]
        assert "Charging started" not in mailbox.subjects()
        # the quiet hours end now (their end moved to this minute): what they held goes out at the next poll
        ended = {**quiet, "end": f"{datetime.now(UTC).astimezone(zone):%H:%M}"}
        put = await app.put("/notifications/preferences", json={"quiet_hours": ended})
        assert put.status_code == 200 and put.json()["quiet_hours"] == ended, put.text
        await running.until("the held e-mail after the quiet hours",
                            lambda: "Charging started" in mailbox.subjects(), 5)
        assert mailbox.subjects().count("Charging complete — please move your car") == 1
