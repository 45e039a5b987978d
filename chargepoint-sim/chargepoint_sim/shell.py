"""``cpsim shell``: one charger, messages typed by hand, answers printed as they come.

The charger connects and boots, then reads commands from stdin until ``quit`` or end of input.
A command that fails prints one line and the shell goes on.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable
from typing import Any

from ocpp.v16 import call
from ocpp.v16.enums import ChargePointErrorCode

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.errors import CpsimError

HELP = """commands:
  boot                          send BootNotification
  heartbeat                     send Heartbeat
  authorize TAG                 send Authorize
  start CONNECTOR TAG [WH]      StartTransaction (meterStart WH, default the last meter value)
  meter CONNECTOR WH            MeterValues with the energy register at WH
  stop [CONNECTOR] [REASON]     StopTransaction of the connector's transaction (default 1, Local)
  status CONNECTOR STATUS [ERR] StatusNotification, e.g. status 1 Faulted GroundFailure
  offline | online              lose the link (transaction messages are queued) | reconnect and replay
  drop [SECONDS]                cut the TCP connection, reconnect after SECONDS (default 0) and replay
  fault 1970|kwh on|off         timestamps from 1970 | energy register in kWh
  fault repeat ACTION|off       send ACTION twice (e.g. StartTransaction) | stop repeating
  raw FRAME                     send an OCPP-J frame as typed, e.g. raw [2,"x","Heartbeat",{}]
  help                          this list
  quit                          disconnect and leave"""


class Shell:
    """Interprets the commands of one line at a time against one connected charger."""

    def __init__(self, charger: SimulatedCharger, out: Callable[[str], None]) -> None:
        self.charger = charger
        self.out = out
        self.transactions: dict[int, int] = {}
        self.registers: dict[int, int] = {}

    async def handle(self, line: str) -> bool:
        """Run one command; False when the shell should end."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        word, _, rest = line.partition(" ")
        word = word.lower()
        if word in ("quit", "exit"):
            return False
        try:
            if word == "raw":
                answer = await self.charger.send_raw(rest.strip())
                self.out(answer if answer is not None else "sent")
                return True
            args = shlex.split(rest)
            command = _COMMANDS.get(word)
            if command is None:
                self.out(f"unknown command {word!r}: type help")
                return True
            await command(self, args)
        except (ValueError, IndexError):
            self.out(f"usage: {next((h.strip() for h in HELP.splitlines() if h.strip().startswith(word)), word)}")
        except CpsimError as exc:
            self.out(f"error: {exc}")
        return True

    def _show(self, action: str, answer: Any) -> None:
        fields = {k: v for k, v in vars(answer).items() if v is not None} if answer is not None else {}
        self.out(f"{action}: {fields}")

    async def boot(self, args: list[str]) -> None:
        answer = await self.charger.send(call.BootNotification(
            charge_point_model=self.charger.model, charge_point_vendor=self.charger.vendor))
        self._show("BootNotification", answer)

    async def heartbeat(self, args: list[str]) -> None:
        self._show("Heartbeat", await self.charger.send(call.Heartbeat()))

    async def authorize(self, args: list[str]) -> None:
        self._show("Authorize", await self.charger.send(call.Authorize(id_tag=args[0])))

    async def start(self, args: list[str]) -> None:
        connector, tag = int(args[0]), args[1]
        meter = int(args[2]) if len(args) > 2 else self.registers.get(connector, 0)
        answer = await self.charger.send(call.StartTransaction(
            connector_id=connector, id_tag=tag, meter_start=meter, timestamp=self.charger.timestamp()))
        self.transactions[connector] = answer.transaction_id
        self.registers[connector] = meter
        self._show("StartTransaction", answer)

    async def meter(self, args: list[str]) -> None:
        connector, wh = int(args[0]), int(args[1])
        self.registers[connector] = wh
        answer = await self.charger.send(call.MeterValues(
            connector_id=connector, transaction_id=self.transactions.get(connector),
            meter_value=[{"timestamp": self.charger.timestamp(), "sampledValue": [
                {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]))
        self._show("MeterValues", answer)

    async def stop(self, args: list[str]) -> None:
        connector = int(args[0]) if args else 1
        reason = args[1] if len(args) > 1 else "Local"
        transaction = self.transactions.pop(connector, None)
        if transaction is None:
            self.out(f"no transaction on connector {connector}: start one first")
            return
        answer = await self.charger.send(call.StopTransaction(
            meter_stop=self.registers.get(connector, 0), timestamp=self.charger.timestamp(), transaction_id=transaction,
            reason=reason))
        self._show("StopTransaction", answer)

    async def status(self, args: list[str]) -> None:
        connector, status = int(args[0]), args[1]
        error = args[2] if len(args) > 2 else ChargePointErrorCode.no_error
        self._show("StatusNotification", await self.charger.send(call.StatusNotification(
            connector_id=connector, error_code=error, status=status, timestamp=self.charger.timestamp())))

    async def offline(self, args: list[str]) -> None:
        await self.charger.go_offline()
        self.out("offline: transaction messages are queued")

    async def online(self, args: list[str]) -> None:
        queued = self.charger.queued
        await self.charger.go_online()
        self.out(f"online: {queued} queued message(s) replayed")

    async def drop(self, args: list[str]) -> None:
        seconds = float(args[0]) if args else 0.0
        await self.charger.go_offline(abrupt=True)
        self.out(f"connection dropped; reconnecting in {seconds:g} s")
        await asyncio.sleep(seconds)
        await self.online([])

    async def fault(self, args: list[str]) -> None:
        kind, value = args[0].lower(), args[1]
        faults = self.charger.faults
        if kind in ("1970", "kwh"):
            if value not in ("on", "off"):
                raise ValueError(value)
            if kind == "1970":
                faults.clock_1970 = value == "on"
            else:
                faults.report_kwh = value == "on"
        elif kind == "repeat":
            if value == "off":
                faults.repeat.clear()
            else:
                faults.repeat.add(value)
        else:
            raise ValueError(kind)
        self.out(f"faults: clock_1970={faults.clock_1970} kwh={faults.report_kwh} "
                 f"repeat={sorted(faults.repeat) or '-'}")

    async def help(self, args: list[str]) -> None:
        self.out(HELP)


_COMMANDS: dict[str, Callable[[Shell, list[str]], Any]] = {
    "boot": Shell.boot, "heartbeat": Shell.heartbeat, "authorize": Shell.authorize, "start": Shell.start,
    "meter": Shell.meter, "stop": Shell.stop, "status": Shell.status, "offline": Shell.offline,
    "online": Shell.online, "drop": Shell.drop, "fault": Shell.fault, "help": Shell.help,
}


async def run_shell(charger: SimulatedCharger, *, out: Callable[[str], None], prompt: str = "cpsim> ",
                    interactive: bool | None = None) -> None:
    """Connect ``charger``, then read and run commands from stdin until quit or end of input."""
    interactive = sys.stdin.isatty() if interactive is None else interactive
    async with charger:
        out(f"{charger.charger_id} connected to {charger.url} ({charger.registration_status}); type help")
        shell = Shell(charger, out)
        while True:
            if interactive:
                sys.stdout.write(prompt)
                sys.stdout.flush()
            line = await asyncio.to_thread(sys.stdin.readline)
            if not line:
                break
            if not await shell.handle(line):
                break
