"""OCPP load benchmark: the edge's central system against a bare ``ocpp``-library one, same run.

    .venv/bin/python bench/bench_ocpp.py           # full: 1,000 and 10,000 chargers + saturation, ~5 min
    .venv/bin/python bench/bench_ocpp.py --quick   # smoke: 1,000 chargers + saturation, short phases, < 60 s

Each phase starts a fresh server process (the edge with its SQLite store and MQTT relay to the
Mosquitto on 127.0.0.1:1883 under a fresh topic root, or the bare system: the library's
ChargePoint + websockets, default schema validation, no storage, no relay) and one load generator
process (``bench/_ocpp_load.py``: raw websockets, pre-serialised frames, one task per charger,
one outstanding CALL per connection). Two processes, two cores.

Phases, for both systems:

* periodic, N chargers: every charger boots, then sends MeterValues every 10 s and a Heartbeat
  every 30 s (random phase). Printed: sustained answered CALLs/s in the measured window, p50/p99
  CALL→CALLRESULT latency, the server's resident memory, and memory per connected charger
  ((RSS under load - RSS idle) / N);
* saturation: S chargers sending MeterValues back to back, in rounds that alternate bare and
  edge (two in the full run); printed: answered CALLs/s, and the ratio of the means.

For the edge the relay is reported too: envelopes the broker acknowledged per second in the
window, and the outbox backlog at its end (rows stored but not yet relayed). Every target is
printed as MET or NOT MET, as measured; nothing is tuned to flatter.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOAD = Path(__file__).resolve().parent / "_ocpp_load.py"
PYTHON = sys.executable
METER_EVERY = 10.0
HEARTBEAT_EVERY = 30.0


@dataclass
class Phase:
    name: str
    chargers: int
    mode: str  # periodic | saturate
    warmup: float
    duration: float


@dataclass
class Result:
    system: str
    phase: Phase
    load: dict[str, Any]
    rss_idle_kib: int
    rss_kib: int
    relay: dict[str, float] = field(default_factory=dict)

    @property
    def per_charger_kib(self) -> float:
        return (self.rss_kib - self.rss_idle_kib) / max(1, self.phase.chargers)


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class _Server:
    """A server under test in its own process; reads its READY line and, for the edge, relay stats."""

    def __init__(self, system: str, workdir: Path) -> None:
        if system == "edge":
            data = workdir / f"edge-{uuid.uuid4().hex[:8]}"
            args = ["serve-edge", "--site-id", f"bench-{uuid.uuid4().hex[:8]}", "--data-dir", str(data),
                    "--topic-root", f"evpark-bench-{uuid.uuid4()}", "--heartbeat", str(int(HEARTBEAT_EVERY))]
        else:
            args = ["serve-bare", "--heartbeat", str(int(HEARTBEAT_EVERY))]
        self.process = subprocess.Popen([PYTHON, str(LOAD), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, cwd=ROOT)
        self.relay: list[tuple[float, int, int]] = []  # (time, backlog, published)
        self._ready = threading.Event()
        self.port = 0
        self._stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        if not self._ready.wait(30) or not self.port:
            self.stop()
            raise RuntimeError(f"{system} server did not start: {''.join(self._stderr[-20:])}")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            parts = line.split()
            if parts[:1] == ["READY"]:
                self.port = int(parts[1])
                self._ready.set()
            elif parts[:1] == ["RELAY"]:
                self.relay.append((time.monotonic(), int(parts[1]), int(parts[2])))
        self._ready.set()

    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def relay_between(self, begin: float, end: float) -> dict[str, float]:
        inside = [sample for sample in self.relay if begin <= sample[0] <= end]
        if len(inside) < 2:
            return {}
        (t0, _b0, p0), (t1, b1, p1) = inside[0], inside[-1]
        return {"relayed_per_second": (p1 - p0) / max(1e-9, t1 - t0), "backlog": b1}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def run_phase(system: str, phase: Phase, workdir: Path) -> Result:
    server = _Server(system, workdir)
    try:
        time.sleep(1.0)
        rss_idle = _rss_kib(server.process.pid)
        command = [PYTHON, str(LOAD), "load", "--port", str(server.port), "--chargers", str(phase.chargers),
                   "--mode", phase.mode, "--warmup", str(phase.warmup), "--duration", str(phase.duration),
                   "--meter-every", str(METER_EVERY), "--heartbeat", str(HEARTBEAT_EVERY),
                   "--connect-concurrency", "200"]
        load = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert load.stdout is not None
        window = (0.0, 0.0)
        rss = 0
        final: dict[str, Any] = {}
        for line in load.stdout:
            event = json.loads(line)
            if event["event"] == "connected":
                now = time.monotonic()
                window = (now + phase.warmup, now + phase.warmup + phase.duration)
                # Resident memory near the end of the measured window, all chargers connected.
                time.sleep(max(0.0, window[1] - 1.0 - time.monotonic()))
                rss = _rss_kib(server.process.pid)
            elif event["event"] == "done":
                final = event
        load.wait()
        if not final:
            raise RuntimeError(f"the load generator of {system}/{phase.name} failed (exit {load.returncode})")
        return Result(system, phase, final, rss_idle, rss, server.relay_between(*window))
    finally:
        server.stop()


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(results: list[Result], quick: bool) -> str:
    lines = []
    header = (f"{'system':<6} {'phase':<22} {'chargers':>8} {'booted':>7} {'calls/s':>9} {'p50 ms':>8} "
              f"{'p99 ms':>9} {'RSS MiB':>8} {'KiB/chg':>8} {'relayed/s':>10} {'backlog':>8} {'errors':>7}")
    lines.append(header)
    lines.append("-" * len(header))
    for r in results:
        load = r.load
        failures = load["errors"] + load["timeouts"] + load["connect_failures"] + load["disconnects"]
        relayed = f"{r.relay['relayed_per_second']:,.0f}" if r.relay else "-"
        backlog = f"{r.relay['backlog']:,}" if r.relay else "-"
        lines.append(
            f"{r.system:<6} {r.phase.name:<22} {r.phase.chargers:>8,} {load['booted']:>7,} {load['per_second']:>9,.0f} "
            f"{_ms(load['p50_ms']):>8} {_ms(load['p99_ms']):>9} {r.rss_kib / 1024:>8,.1f} "
            f"{r.per_charger_kib:>8,.1f} {relayed:>10} {backlog:>8} {failures:>7}")
    lines.append("")
    by = {(r.system, r.phase.name): r for r in results}
    edge_small = by.get(("edge", "periodic 1,000"))
    edge_big = by.get(("edge", "periodic 10,000"))
    edge_sats = [r for r in results if r.system == "edge" and r.phase.mode == "saturate"]
    bare_sats = [r for r in results if r.system == "bare" and r.phase.mode == "saturate"]
    if edge_small:
        p99 = edge_small.load["p99_ms"] or float("inf")
        lines.append(f"p99 at 1,000 chargers under 50 ms: {p99:,.1f} ms — {_verdict(p99 < 50)}")
    if edge_big:
        load = edge_big.load
        offered = edge_big.phase.chargers * (1 / METER_EVERY + 1 / HEARTBEAT_EVERY)
        held = (load["booted"] == edge_big.phase.chargers and not load["disconnects"] and not load["timeouts"]
                and load["per_second"] >= 0.95 * offered)
        lines.append(f"10,000 chargers held by one edge process: {load['booted']:,} booted, {load['per_second']:,.0f} "
                     f"of {offered:,.0f} calls/s offered, {load['disconnects']} dropped, {load['timeouts']} timed out"
                     f" — {_verdict(held)}")
    sized = edge_big or edge_small
    if sized:
        lines.append(f"memory per connected charger under 100 KiB ({sized.phase.chargers:,} chargers): "
                     f"{sized.per_charger_kib:,.1f} KiB ((RSS {sized.rss_kib / 1024:,.0f} MiB - idle "
                     f"{sized.rss_idle_kib / 1024:,.0f} MiB) / chargers) — {_verdict(sized.per_charger_kib < 100)}")
    if edge_sats and bare_sats:
        edge_rate = sum(r.load["per_second"] for r in edge_sats) / len(edge_sats)
        bare_rate = sum(r.load["per_second"] for r in bare_sats) / len(bare_sats)
        ratio = edge_rate / max(1e-9, bare_rate)
        rounds = ", ".join(f"{e.load['per_second']:,.0f}/{b.load['per_second']:,.0f}"
                           for e, b in zip(edge_sats, bare_sats, strict=False))
        lines.append(f"saturation ({edge_sats[0].phase.chargers} chargers back to back), edge (validation + storage + "
                     f"relay) / bare ocpp library, mean of {len(edge_sats)} alternating round(s) [{rounds}]: "
                     f"{edge_rate:,.0f} / {bare_rate:,.0f} calls/s = {ratio:.2f}x — {_verdict(ratio >= 2)}")
        relay_rates = [r.relay["relayed_per_second"] for r in edge_sats if r.relay]
        if relay_rates:
            mean_relayed = sum(relay_rates) / len(relay_rates)
            lines.append(f"  relay during saturation: {mean_relayed:,.0f} envelopes/s acknowledged by "
                         f"the broker; the rest stays in the outbox (stored and durable, relayed later)")
    for r in results:
        if r.system == "edge" and r.relay and r.relay["relayed_per_second"] < 0.95 * r.load["per_second"] * (
                3 / 4 if r.phase.mode == "periodic" else 1):
            lines.append(f"  relay falls behind in '{r.phase.name}': {r.relay['relayed_per_second']:,.0f}/s relayed, "
                         f"backlog {r.relay['backlog']:,} — NOT MET (relay keeps pace)")
    if quick:
        lines.append("(--quick: 10,000 chargers not run; short phases)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1,000 chargers and saturation, < 60 s")
    parser.add_argument("--saturation-chargers", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench._ocpp_load import raise_fd_limit  # after the path is set

    hard = raise_fd_limit()
    if args.quick:
        phases = [Phase("periodic 1,000", 1000, "periodic", 4, 6)]
        saturation, rounds = Phase("saturation", 200, "saturate", 3, 6), 1
    else:
        phases = [Phase("periodic 1,000", 1000, "periodic", 5, 20),
                  Phase("periodic 10,000", 10_000, "periodic", 5, 20)]
        saturation, rounds = Phase("saturation", args.saturation_chargers, "saturate", 4, 12), 2
    if max(p.chargers for p in phases) + 512 > hard:
        raise SystemExit(f"the descriptor limit ({hard}) is too low for {max(p.chargers for p in phases)} chargers")
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="evpark-bench-ocpp-"))
    results = []
    try:
        for system in ("bare", "edge"):
            for phase in phases:
                print(f"… {system}: {phase.name}", file=sys.stderr, flush=True)
                results.append(run_phase(system, phase, workdir))
        # Saturation rounds alternate bare and edge, so background load on the shared machine
        # weighs on both alike; the ratio uses the mean of the rounds.
        for round_number in range(1, rounds + 1):
            for system in ("bare", "edge"):
                name = f"saturation #{round_number}"
                print(f"… {system}: {name}", file=sys.stderr, flush=True)
                results.append(run_phase(system, Phase(name, saturation.chargers, saturation.mode,
                                                       saturation.warmup, saturation.duration), workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"OCPP 1.6J load benchmark — {os.cpu_count()} cores, loopback, MeterValues every {METER_EVERY:.0f} s + "
          f"Heartbeat every {HEARTBEAT_EVERY:.0f} s per charger; saturation = back-to-back MeterValues")
    print(report(results, args.quick))
    print(f"(total {time.monotonic() - started:,.0f} s)")


if __name__ == "__main__":
    main()
