"""Who keeps the cores busy during a measured span: CPU time (user + system, from ``/proc``) of named
processes, of this bench process, of the PostgreSQL backends, RabbitMQ and Mosquitto, and of the whole
machine. On a shared two-core machine latencies and rates follow how busy the cores are; a bench prints
this beside its figures so a reader can tell a slow path from a saturated machine."""

from __future__ import annotations

import os
import time


class CpuMeter:
    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = dict(pids)
        self._ticks = os.sysconf("SC_CLK_TCK")
        self._first: dict[str, float] = {}
        self._began = 0.0
        self.cores = os.cpu_count() or 1
        self.wall = 0.0
        self.spent: dict[str, float] = {}
        """CPU seconds per process between :meth:`begin` and :meth:`end`, and ``(machine)``."""

    def _process(self, pid: int | str) -> float:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self._ticks

    def _by_command(self, word: str) -> float:
        total = 0.0
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as line:
                    command = line.read()
            except OSError:
                continue
            if command.startswith(word.encode()) or f"/{word}".encode() in command.split(b"\0")[0]:
                total += self._process(pid)
        return total

    def _machine(self) -> float:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return (sum(fields[:8]) - fields[3] - fields[4]) / self._ticks  # all but idle and iowait

    def _snapshot(self) -> dict[str, float]:
        shot = {name: self._process(pid) for name, pid in self._pids.items()}
        shot["(this bench)"] = self._process(os.getpid())
        shot["(PostgreSQL backends)"] = self._by_command("postgres:")  # a backend that ended is not counted
        shot["(RabbitMQ)"] = self._by_command("beam.smp")
        shot["(Mosquitto)"] = self._by_command("mosquitto")
        shot["(machine)"] = self._machine()
        return shot

    def begin(self) -> None:
        self._first, self._began = self._snapshot(), time.monotonic()

    def end(self) -> None:
        last = self._snapshot()
        self.wall = time.monotonic() - self._began
        self.spent = {name: last[name] - self._first.get(name, 0.0) for name in last}

    def busy(self) -> float:
        """The share of the machine's cores busy over the span (0..1)."""
        return self.spent["(machine)"] / self.wall / self.cores if self.wall else 0.0

    def lines(self, per: int = 0, unit: str = "") -> list[str]:
        """One line per process, by CPU spent: its share of a core, and with ``per`` its ms per ``unit``."""
        rows = []
        for name, seconds in sorted(self.spent.items(), key=lambda item: -item[1]):
            if name == "(machine)" or seconds <= 0:
                continue
            each = f"{seconds / per * 1000:7.0f} ms per {unit}, " if per else ""
            rows.append(f"    {name:<24} {each}{seconds / self.wall:5.0%} of a core")
        return rows
