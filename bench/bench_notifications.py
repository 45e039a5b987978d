"""Notification delivery throughput and latency: ``--messages`` driver events (payment.completed → an
e-mail to a real aiosmtpd sink, plus in-app) and as many operator alerts (charger faults of distinct
chargers → a signed webhook to a real HTTP receiver that verifies the signature), published on the bus to
the running service (PostgreSQL + RabbitMQ with ``--production``, else SQLite + the in-process bus).

Printed: delivered per second to each receiver and the event-to-delivery p50 / p95 (publish → the
receiver has it), beside a baseline measured in the same run: the same number of messages sent straight
to the same receivers (aiosmtplib / httpx, the same concurrency), i.e. the channels' own ceiling.

    .venv/bin/python bench/bench_notifications.py                   # 300 + 300, embedded
    .venv/bin/python bench/bench_notifications.py --production --messages 500 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiosmtplib
import httpx
from aiosmtpd.controller import Controller

from cloud.contracts import Event
from cloud.contracts.accounts import AccountRegistered
from cloud.contracts.charging import ChargerFaulted
from cloud.contracts.payments import PaymentCompleted
from tests.integration.cloud.test_notifications_delivery import (
    NOW,
    Mailbox,
    Place,
    Receiver,
    fast,
    http_receiver,
    running,
)
from tests.support import services
from tests.support.services import free_port


class TimedMailbox(Mailbox):
    def __init__(self) -> None:
        super().__init__()
        self.arrived: dict[str, float] = {}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        answer = await super().handle_DATA(server, session, envelope)
        subject_marker = envelope.content.decode(errors="replace").split("X-Bench: ", 1)
        key = subject_marker[1].split("\r\n", 1)[0].split("\n", 1)[0] if len(subject_marker) > 1 else ""
        if not key:  # the service's messages: the amount tells which event it was
            text = envelope.content.decode(errors="replace")
            key = text.split("we received ", 1)[1].split(" ", 1)[0] if "we received " in text else ""
        self.arrived[key] = time.monotonic()
        return answer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def baseline(n: int, concurrency: int, smtp_port: int, hook_url: str) -> tuple[float, float]:
    gate = asyncio.Semaphore(concurrency)

    async def mail(i: int) -> None:
        async with gate:
            await aiosmtplib.send(f"Subject: b\r\nX-Bench: base-{i}\r\n\r\nbaseline\r\n", sender="b@x.test",
                                  recipients=["d@x.test"], hostname="127.0.0.1", port=smtp_port, start_tls=False)

    began = time.monotonic()
    await asyncio.gather(*(mail(i) for i in range(n)))
    mail_rate = n / (time.monotonic() - began)
    async with httpx.AsyncClient() as client:
        async def post(i: int) -> None:
            async with gate:
                await client.post(hook_url, content=json.dumps({"i": i}))

        began = time.monotonic()
        await asyncio.gather(*(post(i) for i in range(n)))
        hook_rate = n / (time.monotonic() - began)
    return mail_rate, hook_rate


async def main(args: argparse.Namespace) -> None:
    if args.production:
        services.require("PostgreSQL", services.POSTGRES)
        services.require("RabbitMQ", services.RABBITMQ)
    box = TimedMailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    hook_times: dict[str, float] = {}
    receiver = Receiver()
    original = receiver.received
    for hook in http_receiver(receiver):
        try:
            mail_base, hook_base = await baseline(args.messages, args.concurrency, controller.port, hook.url)
            box.arrived.clear()
            box.messages.clear()
            hook.received.clear()
            hook.bad_signatures = 0
            chosen = fast(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_security="none",
                          webhook_urls=[hook.url], concurrency=args.concurrency, max_attempts=8)
            with tempfile.TemporaryDirectory() as folder:
                place = Place(args.production, Path(folder))
                await place.open()
                try:
                    async with running(place, chosen) as n:
                        await n.publish(AccountRegistered(account_id="acc-bench", email="d@x.test", name="Bench",
                                                          roles=["driver"]))
                        await asyncio.sleep(0.5)
                        published: dict[str, float] = {}
                        events = []
                        for i in range(args.messages):
                            events.append(Event.of(PaymentCompleted(
                                payment_id=f"p-{i}", account_id="acc-bench", amount=Decimal(f"{i}.00"),
                                currency="EUR", completed_at=NOW), source="bench"))
                            events.append(Event.of(ChargerFaulted(
                                site_id="site-b", charger_id=f"cp-{i}", connector_id=1, error_code="Other",
                                faulted_at=NOW), source="bench"))
                        began = time.monotonic()
                        for i, event in enumerate(events):
                            published[f"{i // 2}.00" if i % 2 == 0 else f"cp-{i // 2}"] = time.monotonic()
                            await n.bus.publish(event)
                        deadline = time.monotonic() + args.limit
                        while (len(box.arrived) < args.messages or len(hook.received) < args.messages) and \
                                time.monotonic() < deadline:
                            for r in hook.received[len(hook_times):]:
                                hook_times[r["body"]["data"]["charger_id"]] = time.monotonic()
                            await asyncio.sleep(0.005)
                        for r in hook.received[len(hook_times):]:
                            hook_times[r["body"]["data"]["charger_id"]] = time.monotonic()
                        mail_done = max(box.arrived.values(), default=began)
                        hook_done = max(hook_times.values(), default=began)
                finally:
                    await place.drop()
        finally:
            controller.stop()
    assert original is receiver.received
    mail_lat = [(box.arrived[k] - published[k]) * 1000 for k in box.arrived if k in published]
    hook_lat = [(hook_times[k] - published[k]) * 1000 for k in hook_times if k in published]
    mode = "PostgreSQL + RabbitMQ" if args.production else "SQLite + in-process bus"
    print(f"notifications, {mode}, {args.messages} e-mails + {args.messages} webhooks, concurrency "
          f"{args.concurrency}")
    print(f"  e-mail   delivered {len(box.arrived):5d}  {len(box.arrived) / max(mail_done - began, 1e-9):8.1f}/s"
          f"  (baseline, straight to the sink: {mail_base:8.1f}/s)  event→delivery p50 "
          f"{percentile(mail_lat, 0.5):7.1f} ms  p95 {percentile(mail_lat, 0.95):7.1f} ms")
    print(f"  webhook  delivered {len(hook_times):5d}  {len(hook_times) / max(hook_done - began, 1e-9):8.1f}/s"
          f"  (baseline, straight to the receiver: {hook_base:8.1f}/s)  event→delivery p50 "
          f"{percentile(hook_lat, 0.5):7.1f} ms  p95 {percentile(hook_lat, 0.95):7.1f} ms"
          f"  bad signatures {hook.bad_signatures}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--production", action="store_true")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds to wait for every delivery")
    asyncio.run(main(parser.parse_args()))
