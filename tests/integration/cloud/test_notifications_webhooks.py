"""Webhooks an account registers (``/notifications/webhooks``): its own only, its notifications signed with the
webhook's own secret to a real HTTP receiver; a URL that is not http(s), or in production points at a
loopback, link-local or private address in any numeric form, is a 422 naming ``url``; a name is resolved at
each delivery and the request goes to the address checked, and in production a name that resolves into the
cloud's own network fails the delivery for good; the service refuses to start with such a deployment URL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud.contracts.charging import ChargerFaulted
from cloud.notifications.domain import verify
from tests.e2e.harness import EVPARK
from tests.integration.cloud.test_notifications_delivery import (
    NOW,
    SECRET,
    Notifier,
    Receiver,
    driver,
    fast,
    http_receiver,
    known,
    mode,
    operator,
    paid,
    state_is,
)
from tests.integration.cloud.test_notifications_delivery import started as start_service
from tests.support import services
from tests.support.identity import headers
from tests.support.waiting import eventually

__all__ = ["mode"]

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from http_receiver(Receiver())


def started(tmp_path: Path, production: bool, **options: Any) -> Any:
    return start_service(tmp_path, production, fast(), **options)


async def webhook_rows(n: Notifier) -> list[tuple[str, str, int, str | None]]:
    return [(r.kind, r.state, r.attempts, r.last_error) for r in await n.rows(
        "SELECT kind, state, attempts, last_error FROM notifications WHERE channel = 'webhook' ORDER BY kind")]


async def test_an_account_registers_its_own_webhook_and_gets_its_notifications_signed_with_its_secret(
        mode: bool, tmp_path: Path, receiver: Receiver) -> None:
    async with started(tmp_path, mode) as n:
        await n.publish(driver())
        await known(n, 1)
        made = await n.client.post("/notifications/webhooks", headers=headers("driver_a"), json={"url": receiver.url})
        assert made.status_code == 201, made.text
        hook = made.json()
        assert hook["url"] == receiver.url and hook["secret"].startswith("whsec_")
        receiver.secret = hook["secret"]
        listed = (await n.client.get("/notifications/webhooks", headers=headers("driver_a"))).json()["items"]
        assert listed == [{"webhook_id": hook["webhook_id"], "url": receiver.url, "created_at": hook["created_at"]}]
        assert (await n.client.get("/notifications/webhooks", headers=headers("driver_b"))).json() == {"items": []}
        theirs = await n.client.delete(f"/notifications/webhooks/{hook['webhook_id']}", headers=headers("driver_b"))
        assert theirs.status_code == 404 and "webhook_id" in theirs.json()["detail"]

        await n.publish(paid(1), paid(2, "acc-driver-b"))
        await eventually(lambda: len(receiver.received) == 1, what="driver A's receipt at A's webhook")
        got = receiver.received[0]
        assert got["body"]["type"] == "payment.completed" and "4.20 EUR" in got["body"]["text"]
        assert receiver.bad_signatures == 0
        assert not verify(got["signature"], got["raw"], SECRET, int(time.time())), "not the deployment's secret"

        # the channel switched off for a kind, then the webhook removed: nothing more reaches it
        assert (await n.client.put("/notifications/preferences", headers=headers("driver_a"), json={
            "channels": {"payment.completed": {"webhook": False}}})).status_code == 200
        await n.publish(paid(3))
        await eventually(lambda: _in_app_count(n, 2), what="the third receipt in-app")
        assert (await n.client.put("/notifications/preferences", headers=headers("driver_a"),
                                   json={})).status_code == 200
        gone = await n.client.delete(f"/notifications/webhooks/{hook['webhook_id']}", headers=headers("driver_a"))
        assert gone.status_code == 204
        assert (await n.client.get("/notifications/webhooks", headers=headers("driver_a"))).json() == {"items": []}
        await n.publish(paid(4))
        await eventually(lambda: _in_app_count(n, 3), what="the fourth receipt in-app")
        await asyncio.sleep(0.3)
        assert len(receiver.received) == 1 and receiver.bad_signatures == 0


async def _in_app_count(n: Notifier, count: int) -> bool:
    return len((await n.client.get("/notifications", headers=headers("driver_a"))).json()["items"]) == count


def _refused_naming_url(answer: Any, says: str) -> None:
    assert answer.status_code == 422, answer.text
    problem = answer.json()
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in problem["errors"]] == ["url"], problem
    assert says in problem["errors"][0]["message"], problem


async def test_a_webhook_url_that_is_not_http_is_a_422_naming_the_field(tmp_path: Path) -> None:
    async with started(tmp_path, False) as n:
        for url, says in (("ftp://hooks.example.com/x", "http"), ("javascript:alert(1)", "http"),
                          ("http://hooks.example.com:99999/", "not a valid URL"), ("", "at least 1 character")):
            _refused_naming_url(await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                                    json={"url": url}), says)
        local = await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                    json={"url": "http://127.0.0.1:9/hook"})
        assert local.status_code == 201, "embedded (tests, `evpark up`): a receiver on this machine is fine"


INTERNAL = ("http://127.0.0.1:9000/hook", "http://127.1/", "http://2130706433/", "http://0x7f000001/",
            "http://0177.0.0.1/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data", "http://0.0.0.0/", "http://10.0.0.5/", "http://[fe80::1]/")


async def test_in_production_a_webhook_url_into_the_clouds_own_network_is_a_422_in_any_form(tmp_path: Path) -> None:
    async with started(tmp_path, True, env="production") as n:
        for url in INTERNAL:
            _refused_naming_url(await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                                    json={"url": url}), "points at")
        assert (await n.client.get("/notifications/webhooks", headers=headers("driver_a"))).json() == {"items": []}
        for i in range(5):
            made = await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                       json={"url": f"https://hooks.example.com/{i}"})
            assert made.status_code == 201, made.text
        sixth = await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                    json={"url": "https://hooks.example.com/6"})
        assert sixth.status_code == 409 and sixth.json()["code"] == "too_many_webhooks"


class Resolver:
    """The name service as the test says it: each name's addresses, and every question asked."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.names:
            raise OSError(f"no such name {host}")
        return self.names[host]


async def test_in_production_a_name_that_resolves_into_the_clouds_network_fails_the_delivery_for_good(
        tmp_path: Path) -> None:
    resolver = Resolver({"hooks.example.com": ["93.184.215.14", "127.0.0.1"],  # any one of them refuses it
                         "alerts.example.com": ["169.254.169.254"]})
    async with start_service(tmp_path, True, fast(webhook_urls=["https://alerts.example.com/hook"]), env="production",
                             resolve=resolver) as n:
        await n.publish(driver(), operator())
        await known(n, 2)
        made = await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                   json={"url": "https://hooks.example.com/evpark"})
        assert made.status_code == 201, "a name is not resolved when it is saved: it may change"
        await n.publish(paid(1), ChargerFaulted(site_id="site-1", charger_id="cp-1", connector_id=1,
                                                error_code="GroundFailure", faulted_at=NOW))

        async def both_failed() -> bool:
            return [(k, s, a) for k, s, a, _ in await webhook_rows(n)] == [
                ("charging.charger_faulted", "failed", 1), ("payment.completed", "failed", 1)]

        await eventually(both_failed, what="both deliveries failed at the first attempt")
        reasons = [e for *_, e in await webhook_rows(n)]
        assert reasons == [
            "refused: alerts.example.com resolves to 169.254.169.254 (a link-local address); a webhook may not "
            "reach the cloud's own network",
            "refused: hooks.example.com resolves to 127.0.0.1 (a loopback address); a webhook may not reach the "
            "cloud's own network"]
        assert sorted(resolver.asked) == [("alerts.example.com", 443), ("hooks.example.com", 443)]
        failed = (await n.client.get("/notifications/failed", headers=headers("admin"))).json()["items"]
        assert sorted(f["channel"] for f in failed) == ["webhook", "webhook"]


async def test_a_name_is_resolved_once_and_the_request_goes_to_the_address_checked(tmp_path: Path,
                                                                                  receiver: Receiver) -> None:
    port = int(receiver.url.rsplit(":", 1)[1].split("/")[0])
    # hooks.test resolves nowhere but here: a second lookup (by the HTTP client) would fail; 127.0.0.2 takes
    # nothing on that port, so the delivery falls through to the name's next address
    resolver = Resolver({"hooks.test": ["127.0.0.2", "127.0.0.1"]})
    async with started(tmp_path, False, resolve=resolver) as n:
        await n.publish(driver())
        await known(n, 1)
        made = await n.client.post("/notifications/webhooks", headers=headers("driver_a"),
                                   json={"url": f"http://hooks.test:{port}/hook"})
        receiver.secret = made.json()["secret"]
        await n.publish(paid(1))
        await eventually(lambda: len(receiver.received) == 1, what="the receipt at the receiver")
        assert receiver.received[0]["host"] == f"hooks.test:{port}"
        assert resolver.asked == [("hooks.test", port)]
        await eventually(state_is(n, "payment.completed", "webhook", [("sent", 1)]), what="recorded sent")


def test_the_service_refuses_to_start_with_a_deployment_webhook_url_into_its_own_network(tmp_path: Path) -> None:
    environment = {**os.environ, "EVPARK_ENV": "production", "EVPARK_DATA_DIR": str(tmp_path),
                   "EVPARK_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/never_{service}",
                   "EVPARK_AMQP_URL": "amqp://guest:guest@127.0.0.1:5672/never",
                   "EVPARK_NOTIFICATIONS_WEBHOOK_URLS": '["https://hooks.example.com/ok", "http://0x7f000001:9000/x"]',
                   "COLUMNS": "400"}
    done = subprocess.run([EVPARK, "serve", "notifications", "--port", str(services.free_port())], env=environment,
                          capture_output=True, text=True, timeout=60, check=False)
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said
    assert "EVPARK_NOTIFICATIONS_WEBHOOK_URLS: 'http://0x7f000001:9000/x' points at 127.0.0.1 (a loopback " \
           "address)" in said, said
    assert "Traceback" not in said
