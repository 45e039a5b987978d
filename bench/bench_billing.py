"""How long a stay takes from its end to its invoice, measured twice in one run (target, issue 18:
p95 < 1 s):

* **end to end** (the figure of the issue): the whole system in production mode, every part its own
  process on PostgreSQL, RabbitMQ, Redis and Mosquitto (as tests/e2e starts it), with a site file of
  ``--chargers`` EV bays, each on a connector of its own cpsim ``SimulatedCharger`` and watched by a
  cpsim ``MqttSensors`` sensor. The site's tariff is set, the driver (the system's admin) pays with a
  card that approves and registers one vehicle (an idTag) per charger. For every stay: the car arrives
  (the sensor publishes "occupied"), its session starts with the vehicle's idTag (StartTransaction, a
  MeterValues), the stay lists the session, the charger sends StopTransaction and the bay turns empty
  (the sensor publishes "free"). The clock starts at the later of the StopTransaction answer and the
  bay-empty publish and stops at the first answer of ``GET /payments/history/{account}`` THROUGH THE
  GATEWAY that holds the stay's invoice (read every ``--poll-ms``, and at once when the stay's
  ``payment.invoice_issued`` reaches the bench on RabbitMQ: that event leaves after the invoice's commit, so
  the clock never stops before the invoice is visible, and ten bays need not read the growing history 50
  times a second each, which took most of the two cores). The bays run in parallel,
  ``--stays / --chargers`` rounds each, at an offered load: ``--rate`` stays end per second across the bays
  (default 0.5; a 500-bay garage whose stays last two hours on average ends one every 14 s, 0.07 per second,
  and here one machine of two cores runs the whole cloud, the edge and the bench). ``--rate 0`` runs them back
  to back, as fast as the system lets them: a capacity test, where the latency is mostly waiting for a core.
  The measured span includes the edge's sensor debounce (``--debounce``, seconds) before it reports the bay
  empty.
* **per hop** (``--no-trace`` leaves it out): p50/p95 of each hop of the same stays, from the bench's own
  listeners on the site's MQTT uplink and on RabbitMQ (:class:`_Trace`): edge → MQTT, MQTT → the parking and
  charging services' handling, their commit and outbox relay → RabbitMQ, RabbitMQ → invoice issued, issued →
  visible.
* **CPU** while the stays ran: how busy the machine was, and the CPU per stay of each process (every
  service, the edge, this bench, PostgreSQL, RabbitMQ, Mosquitto; ``bench/_cpu.py``): the stays per second
  the two cores can carry are about 2 s divided by the CPU per stay.
* **baseline** (the earlier figure): the payment service alone on PostgreSQL and RabbitMQ, fed
  ``charging.completed`` and ``parking.released`` on the bus, the invoice read from the service
  directly; beside it one history read (the floor of any "visible" answer).

    .venv/bin/python bench/bench_billing.py                 # 100 stays, 10 chargers x 10 rounds, 0.5 stays/s
    .venv/bin/python bench/bench_billing.py --rate 0        # the same back to back: the machine's capacity
    .venv/bin/python bench/bench_billing.py --chargers 1    # one stay at a time
    .venv/bin/python bench/bench_billing.py --stays 20 --chargers 5
    .venv/bin/python bench/bench_billing.py --skip-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _cpu import CpuMeter

from tests.integration.cloud.test_payments_billing import DRIVER_A, running, session, stay
from tests.support.identity import headers

SITE = "e2e-site"  # the site id the production e2e system's edge runs as
TARIFF: dict[str, Any] = {
    "site_id": SITE, "currency": "EUR", "tax_rate": "0.19", "time_zone": "Europe/Berlin",
    "elements": [{"components": [
        {"type": "parking_time", "price": "2.00", "step_size": 3600},
        {"type": "energy", "price": "0.30", "step_size": 1},
        {"type": "idle", "price": "0.02", "step_size": 3600, "grace_minutes": 0},
    ]}],
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _figures(values: list[float]) -> str:
    ms = 1000
    return (f"p50 {_percentile(values, 0.5) * ms:.1f} ms, p95 {_percentile(values, 0.95) * ms:.1f} ms, "
            f"max {max(values) * ms:.1f} ms, mean {statistics.mean(values) * ms:.1f} ms")


async def _baseline(stays: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as folder:
        async with running("production", Path(folder)) as payments:
            await payments.card()
            auth = headers("driver_a")
            path = f"/payments/history/{DRIVER_A}"
            reads: list[float] = []
            for _ in range(stays):
                start = time.perf_counter()
                assert (await payments.api.get(path, headers=auth)).status_code == 200
                reads.append(time.perf_counter() - start)
            latencies: list[float] = []
            for n in range(stays):
                start = time.perf_counter()
                await payments.publish(session(f"bench-s-{n}"), source="charging")
                await payments.publish(stay(f"bench-{n}", sessions=(f"bench-s-{n}",)))
                while True:
                    answer = (await payments.api.get(path, headers=auth)).json()
                    if len(answer["invoices"]) > n:
                        break
                    await asyncio.sleep(0.005)
                latencies.append(time.perf_counter() - start)
    return reads, latencies


def _site_file(chargers: int, debounce: float) -> str:
    bays = "".join(f'\n[[bays]]\nid = "EV-{n}"\ntype = "ev"\ncharger_id = "CP-{n}"\nconnector_id = 1\n'
                   for n in range(1, chargers + 1))
    sensors = "".join(f's-ev-{n} = "EV-{n}"\n' for n in range(1, chargers + 1))
    return (f'site_id = "{SITE}"\n{bays}\n[sensors.mqtt]\nhost = "127.0.0.1"\nport = {{mqtt_port}}\n'
            f'username = "e2e-site-sensors"\ntopic_root = "{{root}}"\ndebounce = {debounce}\nstale_after = 600\n'
            f"\n[sensors.mqtt.sensors]\n{sensors}")


class _Trace:
    """The bench's own timestamps of each hop of a stay's end, for the breakdown (``--no-trace`` leaves it out).

    It listens beside the system, changing nothing: a clean MQTT session of its own on the site's uplink
    (``<root>/sites/+/up/#``, QoS 0), which gives when each envelope reached the broker (its receipt here) and when
    the edge wrote it (the envelope's ``ts``); and an exclusive queue of its own in the system's RabbitMQ vhost bound
    to ``charging.completed``, ``parking.released`` and ``payment.invoice_issued``, which gives when the parking and
    charging services handled the envelope (the event's ``occurred_at``, taken in the handler's transaction) and
    when their outbox relay put it on RabbitMQ (its receipt here). Receipts are this process's clock, which the
    bays' own work may delay by a few ms."""

    def __init__(self) -> None:
        self.bay_stay: dict[str, str] = {}  # EV-n -> the stay in progress on it
        self.charger_bay: dict[str, str] = {}
        self.session_stay: dict[str, str] = {}
        self.marks: dict[str, dict[str, float]] = {}
        self._issued: dict[str, asyncio.Event] = {}

    async def issued_or(self, stay_id: str, seconds: float) -> None:
        """Sleep ``seconds``, or less: until ``payment.invoice_issued`` of the stay is on the bus (then 10 ms)."""
        issued = self._issued.setdefault(stay_id, asyncio.Event())
        if issued.is_set():
            await asyncio.sleep(0.01)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(issued.wait(), seconds)

    def begin(self, bay_id: str, charger_id: str, stay_id: str, session_id: str) -> None:
        self.bay_stay[bay_id], self.charger_bay[charger_id], self.session_stay[session_id] = stay_id, bay_id, stay_id
        self.marks[stay_id] = {}

    def mark(self, stay_id: str | None, name: str, at: float) -> None:
        if stay_id is not None and stay_id in self.marks:
            self.marks[stay_id].setdefault(name, at)

    def _envelope(self, payload: bytes, at: float) -> None:
        import json
        from datetime import datetime

        try:
            envelope = json.loads(payload)
            body, kind = envelope["body"], envelope["type"]
            ts = datetime.fromisoformat(envelope["ts"]).timestamp()
        except (ValueError, KeyError, TypeError):
            return
        if kind == "session.stopped":
            stay_id = self.bay_stay.get(self.charger_bay.get(body.get("charger_id"), ""))
            self.mark(stay_id, "stopped_written", ts)
            self.mark(stay_id, "stopped_broker", at)
        elif kind == "bay.occupancy" and body.get("state") == "free":
            stay_id = self.bay_stay.get(body.get("bay_id"))
            self.mark(stay_id, "free_written", ts)
            self.mark(stay_id, "free_broker", at)

    def _event(self, payload: bytes, at: float) -> None:
        import json
        from datetime import datetime

        event = json.loads(payload)
        body, name = event["payload"], event["name"]
        handled = datetime.fromisoformat(event["occurred_at"]).timestamp()
        if name == "charging.completed":
            stay_id = self.session_stay.get(body.get("session_id"))
            self.mark(stay_id, "completed_handled", handled)
            self.mark(stay_id, "completed_bus", at)
        elif name == "parking.released":
            self.mark(body.get("stay_id"), "released_handled", handled)
            self.mark(body.get("stay_id"), "released_bus", at)
        elif name == "payment.invoice_issued":
            self.mark(body.get("stay_id"), "issued", handled)
            self.mark(body.get("stay_id"), "issued_bus", at)
            if body.get("stay_id"):
                self._issued.setdefault(body["stay_id"], asyncio.Event()).set()

    async def listen(self, mqtt_port: int, topic_root: str, amqp_url: str, ready: asyncio.Event) -> None:
        import uuid

        import aio_pika
        import aiomqtt

        from cloud.platform.events import exchange_for_pattern

        connection = await aio_pika.connect_robust(amqp_url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue(exclusive=True, auto_delete=True)
            for name in ("charging.completed", "parking.released", "payment.invoice_issued"):
                exchange = await channel.declare_exchange(exchange_for_pattern(name), aio_pika.ExchangeType.TOPIC,
                                                          durable=True)
                await queue.bind(exchange, name)

            async def on_event(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                self._event(message.body, time.time())

            await queue.consume(on_event, no_ack=True)
            async with aiomqtt.Client("127.0.0.1", mqtt_port, identifier=f"bench-trace-{uuid.uuid4().hex[:8]}",
                                      username="bench-trace", clean_session=True) as client:
                await client.subscribe(f"{topic_root}/sites/+/up/#", qos=0)
                ready.set()
                async for message in client.messages:
                    if isinstance(message.payload, bytes | bytearray):
                        self._envelope(bytes(message.payload), time.time())
        finally:
            await connection.close()

    def report(self) -> list[str]:
        """Per hop, p50/p95 in ms over the stays that have both of its marks."""
        hops = [
            ("StopTransaction answered -> session.stopped written by the edge", "stop", "stopped_written"),
            ("  edge outbox -> on the MQTT broker", "stopped_written", "stopped_broker"),
            ("  MQTT -> charging handled (charging.completed emitted)", "stopped_broker", "completed_handled"),
            ("  charging handled -> on RabbitMQ (commit + outbox relay)", "completed_handled", "completed_bus"),
            ("bay-empty published -> bay.occupancy free written (debounce)", "free", "free_written"),
            ("  edge outbox -> on the MQTT broker", "free_written", "free_broker"),
            ("  MQTT -> parking handled (parking.released emitted)", "free_broker", "released_handled"),
            ("  parking handled -> on RabbitMQ (commit + outbox relay)", "released_handled", "released_bus"),
            ("start -> both events on RabbitMQ (the later)", "start", "both_bus"),
            ("both on RabbitMQ -> invoice issued (payments consumed, billed)", "both_bus", "issued"),
            ("invoice issued -> payment.invoice_issued on RabbitMQ", "issued", "issued_bus"),
            ("invoice issued -> visible through the gateway (incl. poll)", "issued", "visible"),
        ]
        lines = []
        for label, first, second in hops:
            spans = []
            for marks in self.marks.values():
                if "completed_bus" in marks and "released_bus" in marks:
                    marks["both_bus"] = max(marks["completed_bus"], marks["released_bus"])
                if first in marks and second in marks:
                    spans.append(marks[second] - marks[first])
            if spans:
                lines.append(f"    {label:<66} p50 {_percentile(spans, 0.5) * 1000:7.1f} ms, "
                             f"p95 {_percentile(spans, 0.95) * 1000:7.1f} ms (n={len(spans)})")
            else:
                lines.append(f"    {label:<66} no data")
        return lines


async def _until(client: Any, path: str, until: Any, limit_s: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + limit_s
    body: Any = None
    while time.monotonic() < deadline:
        response = await client.get(path)
        if response.status_code == 200:
            body = response.json()
            if until(body):
                return body
        await asyncio.sleep(interval)
    raise RuntimeError(f"{path} never matched within {limit_s} s; last answer: {body}")


async def _end_to_end(stays: int, chargers: int, debounce: float, poll_s: float, setup_s: float = 0.5,
                      trace: _Trace | None = None, cpu: list[CpuMeter] | None = None, rate: float = 0.0,
                      ) -> tuple[list[float], list[float], list[float]]:
    """The end-to-end latencies, the part of each until the invoice was issued (its ``issued_at``, the
    same machine's clock), and the driver's history read through the gateway once every stay is in it;
    ``trace`` gets the timestamps of each hop. ``rate`` (stays per second, 0: back to back) paces the stays'
    ends: the i-th stay (of every bay together) ends no earlier than i / ``rate`` seconds after the first.
    ``setup_s``: how often a bay reads its slot while it waits for the next step of a stay (not measured; ten
    bays reading every 50 ms loaded parking with 200 reads a second)."""
    from datetime import UTC, datetime

    import httpx
    from ocpp.v16 import call
    from ocpp.v16.datatypes import MeterValue, SampledValue

    from chargepoint_sim.charger import SimulatedCharger
    from chargepoint_sim.sensors import MqttSensors
    from tests.e2e.conftest import production_on_shared_broker
    from tests.e2e.harness import now, register_vehicle

    rounds = -(-stays // chargers)
    with tempfile.TemporaryDirectory(prefix="evpark-bench-billing-") as folder:
        async with production_on_shared_broker(Path(folder), _site_file(chargers, debounce)) as system:
            limits = httpx.Limits(max_connections=4 * chargers)
            async with httpx.AsyncClient(base_url=system.gateway, headers=system.headers, timeout=30,
                                         limits=limits) as http:
                account = (await http.get("/auth/me")).json()["account_id"]
                answer = await http.put(f"/billing/rates/{SITE}", json=TARIFF)
                assert answer.status_code == 200, answer.text
                answer = await http.post("/payments/methods", json={"kind": "card", "make_default": True,
                                                                   "card_number": "4242 4242 4242 4242"})
                assert answer.status_code == 201, answer.text
                tags = [f"BENCHBILL{n}" for n in range(1, chargers + 1)]
                for n, tag in enumerate(tags, start=1):
                    await register_vehicle(system, f"EV-BENCH-{n}", [tag])
                status = await _until(http, f"/parking/status?site_id={SITE}",
                                      lambda b: len(b["slots"]) == chargers, 60, 0.2)
                slots = {s["bay_id"]: s["slot_id"] for s in status["slots"]}
                sensors = MqttSensors(SITE, {f"EV-{n}": f"s-ev-{n}" for n in range(1, chargers + 1)},
                                      port=system.mqtt_port, root=system.topic_root, username="sensor-bench")
                latencies: list[float] = []
                issuing: list[float] = []
                invoiced: set[str] = set()
                listening: asyncio.Task[None] | None = None
                if trace is not None:
                    ready = asyncio.Event()
                    listening = asyncio.create_task(trace.listen(system.mqtt_port, system.topic_root,
                                                                 system.env["EVPARK_AMQP_URL"], ready))
                    await asyncio.wait_for(ready.wait(), 30)
                async with sensors:
                    units = [SimulatedCharger(f"CP-{n}", system.ocpp, connectors=1) for n in range(1, chargers + 1)]
                    for unit in units:
                        await unit.connect()
                    try:
                        for unit, tag in zip(units, tags, strict=True):  # each edge learns the idTags
                            for _ in range(240):
                                if (await unit.send(call.Authorize(id_tag=tag))).id_tag_info["status"] == "Accepted":
                                    break
                                await asyncio.sleep(0.25)
                            else:
                                raise RuntimeError(f"the edge never accepted {tag}")
                        for n in range(1, chargers + 1):
                            await sensors.set_occupied(f"EV-{n}", False)
                        for n in range(1, chargers + 1):
                            await _until(http, f"/parking/slots/{slots[f'EV-{n}']}",
                                         lambda b: b["stay"] is None, 30, 0.2)

                        async def bay(n: int, unit: SimulatedCharger, tag: str) -> None:
                            bay_id, register = f"EV-{n}", 0
                            slot = f"/parking/slots/{slots[bay_id]}"
                            for done in range(rounds):
                                if done * chargers + n > stays:
                                    return
                                await sensors.set_occupied(bay_id, True)  # the car arrives
                                await _until(http, slot, lambda b: b["stay"] is not None, 30, setup_s)
                                started = await unit.send(call.StartTransaction(
                                    connector_id=1, id_tag=tag, meter_start=register, timestamp=now()))
                                transaction = int(started.transaction_id)
                                sample = SampledValue(value=str(register + 2_000))
                                await unit.send(call.MeterValues(
                                    connector_id=1, transaction_id=transaction,
                                    meter_value=[MeterValue(timestamp=now(), sampled_value=[sample])]))
                                body = await _until(http, slot, lambda b: b["stay"] is not None
                                                    and len(b["stay"]["session_ids"]) == 1, 30, setup_s)
                                stay_id = body["stay"]["stay_id"]
                                if trace is not None:
                                    trace.begin(bay_id, f"CP-{n}", stay_id, body["stay"]["session_ids"][0])
                                register += 4_000
                                if rate:  # the offered load: the i-th stay of the run ends at i / rate s
                                    due = paced_from + (done * chargers + n - 1) / rate
                                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                                await unit.send(call.StopTransaction(
                                    meter_stop=register, timestamp=now(), transaction_id=transaction,
                                    reason="EVDisconnected", id_tag=tag))
                                stopped, stopped_wall = time.perf_counter(), time.time()
                                await sensors.set_occupied(bay_id, False)  # the car leaves
                                start = max(stopped, time.perf_counter())
                                wall = time.time() - (time.perf_counter() - start)
                                if trace is not None:
                                    trace.mark(stay_id, "stop", stopped_wall)
                                    trace.mark(stay_id, "free", wall)
                                    trace.mark(stay_id, "start", wall)
                                deadline = start + 300
                                while time.perf_counter() < deadline:
                                    answer = await http.get(f"/payments/history/{account}")
                                    found = [i for i in answer.json()["invoices"] if i["stay_id"] == stay_id] \
                                        if answer.status_code == 200 else []
                                    if found:
                                        break
                                    if trace is None:
                                        await asyncio.sleep(poll_s)
                                    else:  # a read at once when the bus says the invoice was issued
                                        await trace.issued_or(stay_id, poll_s)
                                else:
                                    raise RuntimeError(f"stay {stay_id}'s invoice never showed in 300 s")
                                latencies.append(time.perf_counter() - start)
                                if trace is not None:
                                    trace.mark(stay_id, "visible", wall + latencies[-1])
                                issued = datetime.fromisoformat(found[0]["issued_at"]).astimezone(UTC)
                                issuing.append(issued.timestamp() - wall)
                                invoiced.add(stay_id)
                                await _until(http, slot, lambda b: b["stay"] is None, 30, setup_s)

                        meter = CpuMeter({p.name: p.popen.pid for p in system.processes})
                        meter.begin()
                        paced_from = time.perf_counter()
                        await asyncio.gather(*(bay(n, unit, tag) for n, (unit, tag)
                                               in enumerate(zip(units, tags, strict=True), start=1)))
                        meter.end()
                        if cpu is not None:
                            cpu.append(meter)
                    finally:
                        for unit in units:
                            await unit.close()
                        if listening is not None:
                            listening.cancel()
                            with contextlib.suppress(asyncio.CancelledError, Exception):
                                await listening
                reads: list[float] = []
                for _ in range(20):
                    began = time.perf_counter()
                    assert (await http.get(f"/payments/history/{account}")).status_code == 200
                    reads.append(time.perf_counter() - began)
                history = (await http.get(f"/payments/history/{account}")).json()
                paid = sum(1 for i in history["invoices"] if i["stay_id"] in invoiced and i["status"] == "paid")
                if len(invoiced) != stays or paid != stays:
                    raise RuntimeError(f"{len(invoiced)} stays invoiced, {paid} paid, expected {stays}")
    return latencies, issuing, reads


async def _run(args: argparse.Namespace) -> None:
    target = "target p95 < 1000 ms"
    if not args.skip_baseline:
        reads, latencies = await _baseline(args.stays)
        print("baseline (the payment service alone: events published on RabbitMQ -> invoice read from the service):")
        print(f"  history read:                        {_figures(reads)} over {args.stays}")
        print(f"  stay end -> invoice visible:         {_figures(latencies)} over {args.stays} stays "
              f"one after another ({target})")
    trace = None if args.no_trace else _Trace()
    cpu: list[CpuMeter] = []
    latencies, issuing, reads = await _end_to_end(args.stays, args.chargers, args.debounce, args.poll_ms / 1000,
                                                  args.setup_poll_ms / 1000, trace, cpu, args.rate)
    p95 = _percentile(latencies, 0.95)
    print(f"end to end (cpsim StopTransaction + bay-empty sensor -> edge -> cloud -> invoice in GET "
          f"/payments/history through the gateway; {args.chargers} chargers/bays in parallel, "
          f"{f'stays ending at {args.rate:g}/s' if args.rate else 'stays back to back'}, sensor debounce "
          f"{args.debounce:g} s, polled every {args.poll_ms:g} ms):")
    print(f"  stay end -> invoice visible:         {_figures(latencies)} over {len(latencies)} stays "
          f"({target}: {'MET' if p95 < 1.0 else 'NOT MET'})")
    print(f"    of which until the invoice was issued: {_figures(issuing)} (edge debounce, MQTT, parking, RabbitMQ, "
          f"billing; from the invoice's issued_at)")
    print(f"  history read through the gateway:    {_figures(reads)} over 20, once all {len(latencies)} invoices "
          f"are in it")
    if trace is not None:
        print("  per hop (the bench's own listeners on MQTT and RabbitMQ; wall clock of this machine):")
        for line in trace.report():
            print(line)
    for meter in cpu:
        print(f"  CPU while the stays ran ({meter.wall:.0f} s, {args.stays / meter.wall:.2f} stays/s): the machine "
              f"{meter.busy():.0%} busy of {meter.cores} cores, {meter.spent['(machine)'] / args.stays * 1000:.0f} ms "
              f"CPU per stay in all; by process:")
        for line in meter.lines(args.stays, "stay"):
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=100)
    parser.add_argument("--chargers", type=int, default=10, help="chargers/bays running stays in parallel")
    parser.add_argument("--debounce", type=float, default=0.3, help="the edge's sensor debounce, seconds")
    parser.add_argument("--poll-ms", type=float, default=1000.0,
                        help="how often the driver's history is read (and at once on payment.invoice_issued)")
    parser.add_argument("--setup-poll-ms", type=float, default=500.0,
                        help="how often a bay reads its slot between the measured spans (stay opened, session listed)")
    parser.add_argument("--rate", type=float, default=0.5,
                        help="stays ending per second across the bays (the offered load); 0: each bay runs its stays "
                             "back to back, as fast as the system lets it (a capacity test)")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--no-trace", action="store_true",
                        help="leave out the per-hop breakdown and its listeners (the history is then only polled, "
                             "every --poll-ms: give a small one)")
    args = parser.parse_args()
    if args.stays < 1 or args.chargers < 1:
        parser.error("--stays and --chargers must be at least 1")
    if args.rate < 0:
        parser.error("--rate must be 0 (back to back) or a positive number of stays per second")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
