"""``cpsim``: the technician's charger simulator.

    cpsim session --url ws://127.0.0.1:9000/ocpp --charger-id CP-1 --id-tag TAG --energy-wh 7500
    cpsim demo --url ws://127.0.0.1:9000/ocpp --chargers 3 --id-tag TAG
    cpsim run chargepoint-sim/scenarios/small-car-park.yaml
    cpsim shell --url ws://127.0.0.1:9000/ocpp --charger-id CP-1
    cpsim load --url ws://127.0.0.1:9000/ocpp --chargers 1000 --meter-interval 10 --duration 60

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
    help="Simulated OCPP 1.6J chargers and bay sensors: sessions, scenarios, load and a hand-driven shell "
    "against a central system (the edge).",
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
CertFileOption = Annotated[Path | None, typer.Option(
    "--cert-file", exists=True, dir_okay=False, readable=True,
    help="PEM client certificate of the charger, subject CN = its charger id (Security Profile 3, wss:// only).")]
KeyFileOption = Annotated[Path | None, typer.Option(
    "--key-file", exists=True, dir_okay=False, readable=True,
    help="PEM private key of --cert-file (default: the key is in the certificate file).")]
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
    cert_file: CertFileOption = None,
    key_file: KeyFileOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON summary only.")]
    = False,
    verbose: VerboseOption = False,
) -> None:
    """Play one full charging session and print a summary."""
    _configure_logging(verbose)
    context = _ssl_context(ca_file, cert_file, key_file)
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


@app.command()
def run(
    scenario_file: Annotated[Path, typer.Argument(
        metavar="SCENARIO", help="YAML scenario: chargers, sensors and a timeline (see chargepoint-sim/scenarios).")],
    url: Annotated[str | None, typer.Option(
        "--url", help="Override the scenario's central_system.url.")] = None,
    time_compression: Annotated[float | None, typer.Option(
        "--time-compression", min=0.001, help="Override the scenario's simulated seconds per wall second.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Only validate the file, play nothing.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON summary at the end only.")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Play a scenario file: chargers, bay sensors and a timeline of arrivals, sessions and faults."""
    from chargepoint_sim.scenario import load_scenario, play_scenario

    _configure_logging(verbose)
    out = Console(highlight=False, soft_wrap=True)
    try:
        scenario = load_scenario(scenario_file)
    except CpsimError as exc:
        typer.echo(f"cpsim: {exc}", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    compression = time_compression or scenario.time_compression
    if check:
        out.print(f"{scenario_file}: {scenario.name}: {len(scenario.chargers)} chargers, "
                  f"{len(scenario.sensors)} sensors, {len(scenario.timeline)} events over "
                  f"{scenario.duration_s:g} simulated s ({scenario.duration_s / compression:.1f} s at "
                  f"x{compression:g})", markup=False)
        return

    def event(text: str) -> None:
        if not json_output:
            out.print(text, markup=False)

    started = time.monotonic()
    report = _run(play_scenario(scenario, url=url, time_compression=time_compression, on_event=event))
    summary: dict[str, Any] = {
        "scenario": scenario.name,
        "duration_s": round(time.monotonic() - started, 3),
        "sessions": [{"charger_id": charger_id, "connector_id": r.connector_id, "transaction_id": r.transaction_id,
                      "id_tag": r.id_tag, "energy_wh": r.energy_wh, "stop_reason": r.stop_reason}
                     for charger_id, r in report.sessions],
        "errors": report.errors,
    }
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        total = sum(r.energy_wh for _, r in report.sessions)
        out.print(f"{len(report.sessions)} sessions, {total:,} Wh, {len(report.errors)} errors in "
                  f"{summary['duration_s']:.1f} s", markup=False)
    if report.errors:
        raise typer.Exit(EXIT_ERROR)


@app.command()
def shell(
    charger_id: Annotated[str, typer.Option("--charger-id", help="Charge point identity, e.g. CP-1.")],
    url: UrlOption = DEFAULT_URL,
    connectors: Annotated[int, typer.Option("--connectors", min=1, help="Connectors of the charger.")] = 1,
    password: PasswordOption = None,
    ca_file: CaFileOption = None,
    cert_file: CertFileOption = None,
    key_file: KeyFileOption = None,
    verbose: VerboseOption = False,
) -> None:
    """Connect one charger and send OCPP messages by hand (type help at the prompt)."""
    from chargepoint_sim.shell import run_shell

    _configure_logging(verbose)
    context = _ssl_context(ca_file, cert_file, key_file)
    charger = SimulatedCharger(charger_id, url, connectors=connectors, basic_auth_password=password,
                               ssl_context=context)
    _run(run_shell(charger, out=typer.echo))


@app.command()
def load(
    url: UrlOption = DEFAULT_URL,
    chargers: Annotated[int, typer.Option("--chargers", min=1, help="How many chargers to simulate.")] = 100,
    meter_interval: Annotated[float, typer.Option(
        "--meter-interval", min=0.001, help="Seconds between two MeterValues of one charger.")] = 10.0,
    duration: Annotated[float, typer.Option("--duration", min=0.1, help="Seconds to run.")] = 60.0,
    processes: Annotated[int, typer.Option(
        "--processes", min=1, help="Worker processes to spread the chargers over (one event loop each).")] = 1,
    prefix: Annotated[str, typer.Option("--prefix", help="Charger ids are <prefix>1 … <prefix>N.")] = "LOAD-",
    id_tag: Annotated[str, typer.Option("--id-tag", help="idTag of every load session.")] = "LOAD-TAG",
    ramp: Annotated[float, typer.Option(
        "--ramp", min=0, help="Seconds over which to spread the connections (0: as fast as possible).")] = 0.0,
    password: PasswordOption = None,
    ca_file: CaFileOption = None,
    summary_file: Annotated[Path | None, typer.Option(
        "--summary-file", dir_okay=False, help="Also write the JSON summary to this file.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live view; only the JSON summary.")] = False,
) -> None:
    """Load a central system with many lean chargers; live view, then a JSON summary on stdout."""
    from chargepoint_sim.load import LoadOptions, LoadStats, run_load, run_load_processes

    options = LoadOptions(url, chargers, meter_interval=meter_interval, duration_s=duration, prefix=prefix,
                          id_tag=id_tag, password=password, ca_file=str(ca_file) if ca_file else None,
                          ramp_s=ramp)
    view = _LoadView(chargers, enabled=not quiet)
    started = time.monotonic()
    with view:
        if processes == 1:
            async def play() -> LoadStats:
                stop = asyncio.Event()
                with _on_first_sigint(stop.set):
                    return await run_load(options, on_snapshot=view.update, stop=stop)

            stats = _run(play())
        else:
            try:
                stats = run_load_processes(options, processes, on_snapshot=view.update)
            except KeyboardInterrupt:
                typer.echo("cpsim: interrupted", err=True)
                raise typer.Exit(EXIT_INTERRUPTED) from None
    summary = {"url": url, "processes": processes, "meter_interval_s": meter_interval,
               **stats.summary(time.monotonic() - started)}
    text = json.dumps(summary, indent=2)
    typer.echo(text)
    if summary_file is not None:
        summary_file.write_text(text + "\n")
    if stats.connect_failures == chargers:
        typer.echo(f"cpsim: no charger could connect: {stats.last_error}", err=True)
        raise typer.Exit(EXIT_ERROR)


class _LoadView:
    """The live view of ``cpsim load``: messages per second, latency percentiles, errors."""

    def __init__(self, chargers: int, *, enabled: bool) -> None:
        from rich.live import Live

        self.chargers = chargers
        self._live = Live(self._render(None, 0.0), console=Console(stderr=True), refresh_per_second=2,
                          transient=False) if enabled else None
        self._last: tuple[float, int] | None = None
        self._rate = 0.0

    def __enter__(self) -> _LoadView:
        if self._live is not None:
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, stats: Any) -> None:
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self._rate = (stats.answered - self._last[1]) / (now - self._last[0])
        self._last = (now, stats.answered)
        if self._live is not None:
            self._live.update(self._render(stats, self._rate))

    def _render(self, stats: Any, rate: float) -> Table:
        table = Table(title=f"cpsim load: {self.chargers:,} chargers", show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        if stats is None:
            table.add_row("connecting", "…")
            return table

        def ms(p: float) -> str:
            value = stats.percentile_ms(p)
            return "-" if value is None else f"{value:.2f} ms"

        table.add_row("connected", f"{stats.connected:,}")
        table.add_row("messages/s", f"{rate:,.0f}")
        table.add_row("answered", f"{stats.answered:,}")
        table.add_row("latency p50 / p90 / p99", f"{ms(50)} / {ms(90)} / {ms(99)}")
        table.add_row("errors", f"{stats.errors:,}")
        table.add_row("last error", stats.last_error[:80] or "-")
        return table


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


def _ssl_context(ca_file: Path | None, cert_file: Path | None = None,
                 key_file: Path | None = None) -> ssl.SSLContext | None:
    if ca_file is None and cert_file is None:
        if key_file is not None:
            typer.echo("cpsim: --key-file goes with --cert-file.", err=True)
            raise typer.Exit(EXIT_ERROR)
        return None
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        typer.echo(f"cpsim: {ca_file} is not a PEM CA certificate ({exc}): check --ca-file.", err=True)
        raise typer.Exit(EXIT_ERROR) from None
    if cert_file is not None:
        try:
            context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
        except (ssl.SSLError, OSError) as exc:
            typer.echo(f"cpsim: {cert_file} and its key are not a PEM certificate and private key that belong "
                       f"together ({exc}): check --cert-file and --key-file.", err=True)
            raise typer.Exit(EXIT_ERROR) from None
    return context


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
