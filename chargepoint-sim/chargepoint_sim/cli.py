"""``cpsim``: the technician's charger simulator.

    cpsim session --url ws://127.0.0.1:9000/ocpp --charger-id CP-1 --id-tag TAG --energy-wh 7500
    cpsim demo --url ws://127.0.0.1:9000/ocpp --chargers 3 --id-tag TAG

Exit codes: 0 done, 1 the central system could not be reached or refused something
(explained in one sentence on stderr), 2 bad command line, 130 interrupted (a session stopped
by Ctrl-C still ends with a StopTransaction and prints its summary).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from chargepoint_sim.charger import SessionReport, SimulatedCharger
from chargepoint_sim.demo import run_demo
from chargepoint_sim.errors import CpsimError
from chargepoint_sim.meter import MeterSample

DEFAULT_URL = "ws://127.0.0.1:9000/ocpp"
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="cpsim",
    help="Simulated OCPP 1.6J chargers: play charging sessions against a central system (the edge).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

T = TypeVar("T")

UrlOption = Annotated[str, typer.Option(
    "--url", help="OCPP endpoint of the central system; the charger id is appended as the last path "
    "segment. Use wss:// for TLS.")]
PasswordOption = Annotated[str | None, typer.Option(
    "--password", envvar="CPSIM_PASSWORD",
    help="Charger's AuthorizationKey for HTTP Basic auth (Security Profile 1/2); also read from "
    "CPSIM_PASSWORD.")]
CaFileOption = Annotated[Path | None, typer.Option(
    "--ca-file", exists=True, dir_okay=False, readable=True,
    help="PEM file of the CA that signed the central system's TLS certificate (wss:// only).")]
MeterIntervalOption = Annotated[float, typer.Option(
    "--meter-interval", min=0.001, help="Wall-clock seconds between MeterValues.")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log every OCPP message.")]

_log_handler: logging.Handler | None = None


@app.command()
def session(
    charger_id: Annotated[str, typer.Option("--charger-id", help="Charge point identity, e.g. CP-1.")],
    id_tag: Annotated[str, typer.Option("--id-tag", help="RFID tag presented to start the session.")],
    energy_wh: Annotated[int, typer.Option("--energy-wh", min=0, help="Energy to deliver, in Wh.")],
    url: UrlOption = DEFAULT_URL,
    connector: Annotated[int, typer.Option("--connector", min=1, help="Connector to charge on.")] = 1,
    meter_interval: MeterIntervalOption = 1.0,
    speedup: Annotated[float, typer.Option(
        "--speedup", min=0.001,
        help="Simulated seconds per wall second: each sample covers meter-interval x speedup seconds "
        "of charging.")] = 1.0,
    power_w: Annotated[float, typer.Option("--power-w", min=1, help="Charging power before the taper, W.")]
    = 11000,
    meter_start_wh: Annotated[int | None, typer.Option(
        "--meter-start-wh", min=0, help="Set the connector's energy register first (default: 0).")] = None,
    password: PasswordOption = None,
    ca_file: CaFileOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary only.")]
    = False,
    verbose: VerboseOption = False,
) -> None:
    """Play one full charging session and print a summary."""
    _configure_logging(verbose)
    context = _ssl_context(ca_file)
    out = Console(highlight=False)
    started = time.monotonic()
    report = _run(_play_session(
        charger_id, url, connector=connector, id_tag=id_tag, energy_wh=energy_wh,
        meter_interval=meter_interval, speedup=speedup, power_w=power_w, meter_start_wh=meter_start_wh,
        password=password, ssl_context=context, show_progress=not json_output))
    summary = _summary(charger_id, report, time.monotonic() - started)
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        table = Table(title=f"session on {charger_id} connector {report.connector_id}", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for key, value in summary.items():
            table.add_row(_LABELS.get(key, key), f"{value:,}" if isinstance(value, int) else str(value))
        out.print(table)
    if report.energy_wh < energy_wh:
        typer.echo(f"cpsim: the session stopped early ({report.stop_reason}) after {report.energy_wh} "
                   f"of {energy_wh} Wh.", err=True)
        raise typer.Exit(EXIT_INTERRUPTED if report.stop_reason == "Local" else EXIT_ERROR)


@app.command()
def demo(
    id_tag: Annotated[list[str], typer.Option(
        "--id-tag", help="RFID tag the chargers present; repeat the option for several tags.")],
    url: UrlOption = DEFAULT_URL,
    chargers: Annotated[int, typer.Option("--chargers", min=1, help="How many chargers to simulate.")] = 3,
    prefix: Annotated[str, typer.Option("--prefix", help="Charger ids are <prefix>1 … <prefix>N.")] = "CP-",
    min_energy_wh: Annotated[int, typer.Option("--min-energy-wh", min=0, help="Smallest session, Wh.")]
    = 5_000,
    max_energy_wh: Annotated[int, typer.Option("--max-energy-wh", min=0, help="Largest session, Wh.")]
    = 30_000,
    meter_interval: MeterIntervalOption = 1.0,
    speedup: Annotated[float, typer.Option(
        "--speedup", min=0.001, help="Simulated seconds per wall second.")] = 60.0,
    pause: Annotated[float, typer.Option("--pause", min=0, help="Seconds between two sessions.")] = 5.0,
    retry: Annotated[float, typer.Option(
        "--retry", min=0, help="Seconds to wait after a refused id tag or an unavailable connector.")] = 30.0,
    password: PasswordOption = None,
    ca_file: CaFileOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Keep N chargers charging sessions back to back until Ctrl-C."""
    if min_energy_wh > max_energy_wh:
        raise typer.BadParameter("--min-energy-wh must not exceed --max-energy-wh")
    _configure_logging(verbose, demo=True)
    context = _ssl_context(ca_file)
    out = Console(highlight=False)

    def report(charger_id: str, session_report: SessionReport) -> None:
        out.print(f"{charger_id}: transaction {session_report.transaction_id} delivered "
                  f"{session_report.energy_wh:,} Wh to {session_report.id_tag}", markup=False)

    async def play() -> None:
        stop = asyncio.Event()
        with _on_first_sigint(stop.set):
            await run_demo(url, chargers, list(id_tag), stop=stop, charger_prefix=prefix,
                           energy_wh=(min_energy_wh, max_energy_wh), meter_interval=meter_interval,
                           speedup=speedup, pause_s=pause, retry_s=retry, password=password,
                           ssl_context=context, on_session=report)

    noun = "charger" if chargers == 1 else "chargers"
    out.print(f"{chargers} simulated {noun} charging at {url}; Ctrl-C stops them.", markup=False)
    _run(play())
    out.print("stopped.")


async def _play_session(charger_id: str, url: str, *, connector: int, id_tag: str, energy_wh: int,
                        meter_interval: float, speedup: float, power_w: float, meter_start_wh: int | None,
                        password: str | None, ssl_context: ssl.SSLContext | None,
                        show_progress: bool) -> SessionReport:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
        TextColumn("{task.completed:>8,.0f} / {task.total:,.0f} Wh"), TextColumn("{task.fields[power]}"),
        TimeElapsedColumn(), console=Console(stderr=True), disable=not show_progress, transient=False)
    async with SimulatedCharger(charger_id, url, basic_auth_password=password,
                                ssl_context=ssl_context) as charger:
        task = progress.add_task(f"{charger_id}/{connector}", total=max(energy_wh, 1), power="")

        def on_sample(sample: MeterSample) -> None:
            progress.update(task, completed=sample.energy_wh, power=f"{sample.power_w / 1000:6.2f} kW")

        with progress, _on_first_sigint(lambda: charger.stop_session(connector, "Local")):
            return await charger.run_session(
                connector, id_tag, energy_wh, meter_interval=meter_interval, power_w=power_w,
                meter_start_wh=meter_start_wh, speedup=speedup, on_sample=on_sample)


_LABELS = {
    "charger_id": "charger", "connector_id": "connector", "transaction_id": "transaction",
    "id_tag": "id tag", "id_tag_status": "id tag status", "meter_start_wh": "meter start (Wh)",
    "meter_stop_wh": "meter stop (Wh)", "energy_wh": "energy (Wh)", "stop_reason": "stop reason",
    "duration_s": "duration (s)",
}


def _summary(charger_id: str, report: SessionReport, duration_s: float) -> dict[str, Any]:
    return {
        "charger_id": charger_id,
        "connector_id": report.connector_id,
        "transaction_id": report.transaction_id,
        "id_tag": report.id_tag,
        "id_tag_status": report.id_tag_status,
        "meter_start_wh": report.meter_start_wh,
        "meter_stop_wh": report.meter_stop_wh,
        "energy_wh": report.energy_wh,
        "stop_reason": report.stop_reason,
        "duration_s": round(duration_s, 3),
    }


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn simulator errors into one line on stderr and an exit code."""
    try:
        return asyncio.run(coro)
    except CpsimError as exc:
        typer.echo(f"cpsim: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        typer.echo("cpsim: interrupted", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None


@contextlib.contextmanager
def _on_first_sigint(callback: Callable[[], object]) -> Iterator[None]:
    """Ctrl-C once asks for a clean stop (StopTransaction is sent); twice interrupts."""
    loop = asyncio.get_running_loop()

    def first() -> None:
        loop.remove_signal_handler(signal.SIGINT)
        callback()

    try:
        loop.add_signal_handler(signal.SIGINT, first)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext | None:
    if ca_file is None:
        return None
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, OSError) as exc:
        typer.echo(f"cpsim: {ca_file} is not a PEM CA certificate ({exc}): check --ca-file.", err=True)
        raise typer.Exit(EXIT_ERROR) from None


def _configure_logging(verbose: bool, *, demo: bool = False) -> None:
    global _log_handler
    ours = logging.getLogger("chargepoint_sim")
    ocpp_log = logging.getLogger("ocpp")
    if _log_handler is not None:
        ours.removeHandler(_log_handler)
        ocpp_log.removeHandler(_log_handler)
    _log_handler = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
    ours.addHandler(_log_handler)
    ours.setLevel(logging.DEBUG if verbose else logging.INFO if demo else logging.WARNING)
    ours.propagate = False
    ocpp_log.setLevel(logging.INFO if verbose else logging.CRITICAL)
    if verbose:
        ocpp_log.addHandler(_log_handler)


def main() -> None:
    """Entry point of the ``cpsim`` console script."""
    app(prog_name="cpsim")


if __name__ == "__main__":
    main()
