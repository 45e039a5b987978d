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
  GATEWAY that holds the stay's invoice (polled every ``--poll-ms``). The bays run in parallel,
  ``--stays / --chargers`` rounds each. The measured span includes the edge's sensor debounce
  (``--debounce``, seconds) before it reports the bay empty.
* **baseline** (the earlier figure): the payment service alone on PostgreSQL and RabbitMQ, fed
  ``charging.completed`` and ``parking.released`` on the bus, the invoice read from the service
  directly; beside it one history read (the floor of any "visible" answer).

    .venv/bin/python bench/bench_billing.py                       # 100 stays, 10 chargers x 10 rounds
    .venv/bin/python bench/bench_billing.py --stays 20 --chargers 5
    .venv/bin/python bench/bench_billing.py --skip-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


async def _end_to_end(stays: int, chargers: int, debounce: float,
                      poll_s: float) -> tuple[list[float], list[float], list[float]]:
    """The end-to-end latencies, the part of each until the invoice was issued (its ``issued_at``, the
    same machine's clock), and the driver's history read through the gateway once every stay is in it."""
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
                                await _until(http, slot, lambda b: b["stay"] is not None, 30)
                                started = await unit.send(call.StartTransaction(
                                    connector_id=1, id_tag=tag, meter_start=register, timestamp=now()))
                                transaction = int(started.transaction_id)
                                sample = SampledValue(value=str(register + 2_000))
                                await unit.send(call.MeterValues(
                                    connector_id=1, transaction_id=transaction,
                                    meter_value=[MeterValue(timestamp=now(), sampled_value=[sample])]))
                                body = await _until(http, slot, lambda b: b["stay"] is not None
                                                    and len(b["stay"]["session_ids"]) == 1, 30)
                                stay_id = body["stay"]["stay_id"]
                                register += 4_000
                                await unit.send(call.StopTransaction(
                                    meter_stop=register, timestamp=now(), transaction_id=transaction,
                                    reason="EVDisconnected", id_tag=tag))
                                stopped = time.perf_counter()
                                await sensors.set_occupied(bay_id, False)  # the car leaves
                                start = max(stopped, time.perf_counter())
                                wall = time.time() - (time.perf_counter() - start)
                                deadline = start + 300
                                while time.perf_counter() < deadline:
                                    answer = await http.get(f"/payments/history/{account}")
                                    found = [i for i in answer.json()["invoices"] if i["stay_id"] == stay_id] \
                                        if answer.status_code == 200 else []
                                    if found:
                                        break
                                    await asyncio.sleep(poll_s)
                                else:
                                    raise RuntimeError(f"stay {stay_id}'s invoice never showed in 300 s")
                                latencies.append(time.perf_counter() - start)
                                issued = datetime.fromisoformat(found[0]["issued_at"]).astimezone(UTC)
                                issuing.append(issued.timestamp() - wall)
                                invoiced.add(stay_id)
                                await _until(http, slot, lambda b: b["stay"] is None, 30)

                        await asyncio.gather(*(bay(n, unit, tag) for n, (unit, tag)
                                               in enumerate(zip(units, tags, strict=True), start=1)))
                    finally:
                        for unit in units:
                            await unit.close()
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
    latencies, issuing, reads = await _end_to_end(args.stays, args.chargers, args.debounce, args.poll_ms / 1000)
    p95 = _percentile(latencies, 0.95)
    print(f"end to end (cpsim StopTransaction + bay-empty sensor -> edge -> cloud -> invoice in GET "
          f"/payments/history through the gateway; {args.chargers} chargers/bays in parallel, sensor debounce "
          f"{args.debounce:g} s, polled every {args.poll_ms:g} ms):")
    print(f"  stay end -> invoice visible:         {_figures(latencies)} over {len(latencies)} stays "
          f"({target}: {'MET' if p95 < 1.0 else 'NOT MET'})")
    print(f"    of which until the invoice was issued: {_figures(issuing)} (edge debounce, MQTT, parking, RabbitMQ, "
          f"billing; from the invoice's issued_at)")
    print(f"  history read through the gateway:    {_figures(reads)} over 20, once all {len(latencies)} invoices "
          f"are in it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stays", type=int, default=100)
    parser.add_argument("--chargers", type=int, default=10, help="chargers/bays running stays in parallel")
    parser.add_argument("--debounce", type=float, default=0.3, help="the edge's sensor debounce, seconds")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="how often the driver's history is read")
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if args.stays < 1 or args.chargers < 1:
        parser.error("--stays and --chargers must be at least 1")
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
