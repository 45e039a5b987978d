"""cpsim with Security Profile 1 and 2 credentials against evpark's edge: Basic auth over ws:// and
wss://, and the one-sentence explanations of a wrong password or an untrusted certificate."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from chargepoint_sim.charger import SimulatedCharger
from chargepoint_sim.errors import CentralSystemUnreachable
from chargepoint_sim.load import LoadOptions, run_load
from edge import Edge, EdgeSettings
from mqtt.payloads import AuthListEntry

pytestmark = pytest.mark.integration

KEY = "0123456789abcdef-key"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def offline_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@pytest.fixture
async def tls_edge(tmp_path: Path, offline_port: int, certificate: tuple[Path, Path]) -> AsyncIterator[Edge]:
    cert, key = certificate
    settings = EdgeSettings(site_id="cpsim-tls", data_dir=tmp_path / "edge", ocpp_port=0, mqtt_port=offline_port,
                            accept_unknown_chargers=False, admin_enabled=False, ocpp_tls_cert=cert,
                            ocpp_tls_key=key)
    async with Edge(settings) as edge:
        for n in range(1, 4):
            await edge.site.set_auth_key(f"CP-{n}", KEY, 2)
        async with edge.store.transaction() as tx:
            await tx.upsert_auth_entries([AuthListEntry(id_tag="TAG-1", status="Accepted")], version=1)
        yield edge


async def test_profile_2_session_over_tls_with_the_chargers_key(tls_edge: Edge, certificate: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    url = f"wss://127.0.0.1:{tls_edge.ocpp_port}/ocpp"
    async with SimulatedCharger("CP-1", url, basic_auth_password=KEY, ssl_context=context) as charger:
        report = await charger.run_session(1, "TAG-1", 500, meter_interval=0.001, speedup=20_000)
    record = await tls_edge.store.get_transaction(report.transaction_id)
    assert record is not None and record.meter_stop == 500


async def test_untrusted_certificate_is_explained(tls_edge: Edge) -> None:
    url = f"wss://127.0.0.1:{tls_edge.ocpp_port}/ocpp"
    with pytest.raises(CentralSystemUnreachable) as untrusted:
        async with SimulatedCharger("CP-1", url, basic_auth_password=KEY, ssl_context=ssl.create_default_context()):
            pass
    assert "could not be verified" in str(untrusted.value) and "--ca-file" in str(untrusted.value)


async def test_wrong_key_gets_a_401_explanation(tls_edge: Edge, certificate: tuple[Path, Path]) -> None:
    context = ssl.create_default_context(cafile=str(certificate[0]))
    url = f"wss://127.0.0.1:{tls_edge.ocpp_port}/ocpp"
    with pytest.raises(CentralSystemUnreachable) as refused:
        async with SimulatedCharger("CP-1", url, basic_auth_password=KEY + "x", ssl_context=context):
            pass
    assert "rejected the password" in str(refused.value) and "HTTP 401" in str(refused.value)


async def test_load_mode_uses_the_credentials_too(tls_edge: Edge, certificate: tuple[Path, Path]) -> None:
    stats = await run_load(LoadOptions(f"wss://127.0.0.1:{tls_edge.ocpp_port}/ocpp", 3, meter_interval=0.2,
                                       duration_s=1.0, prefix="CP-", id_tag="TAG-1", password=KEY,
                                       ca_file=str(certificate[0])))
    assert stats.errors == 0, stats.last_error
    assert stats.connect_failures == 0 and stats.answered >= 3 * 5


async def test_profile_3_session_with_the_chargers_client_certificate(tmp_path: Path, offline_port: int) -> None:
    """``cpsim session --cert-file/--key-file`` against an edge that asks for client certificates."""
    import asyncio
    import json

    from typer.testing import CliRunner

    from chargepoint_sim.cli import app

    folder = tmp_path / "pki"
    folder.mkdir()

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60, cwd=folder)

    # the README's commands, with the edge's address as the server name
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=test chargers CA", "-keyout", "ca.key", "-out", "ca.crt")
    for name, cn, extension in (("server", "127.0.0.1", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                                ("cp-3", "CP-3", "extendedKeyUsage=clientAuth")):
        (folder / f"{name}.ext").write_text(extension)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext")
    settings = EdgeSettings(site_id="cpsim-tls3", data_dir=tmp_path / "edge", ocpp_port=0, mqtt_port=offline_port,
                            accept_unknown_chargers=False, admin_enabled=False, ocpp_tls_cert=folder / "server.crt",
                            ocpp_tls_key=folder / "server.key", ocpp_tls_client_ca=folder / "ca.crt")
    async with Edge(settings) as edge:
        await edge.site.set_security_profile("CP-3", 3)
        async with edge.store.transaction() as tx:
            await tx.upsert_auth_entries([AuthListEntry(id_tag="TAG-1", status="Accepted")], version=1)
        base = ["session", "--url", f"wss://127.0.0.1:{edge.ocpp_port}/ocpp", "--charger-id", "CP-3", "--id-tag",
                "TAG-1", "--energy-wh", "500", "--meter-interval", "0.001", "--speedup", "20000",
                "--ca-file", str(folder / "ca.crt")]
        runner = CliRunner()
        with_cert = await asyncio.to_thread(runner.invoke, app, [*base, "--json", "--cert-file",
                                                                 str(folder / "cp-3.crt"), "--key-file",
                                                                 str(folder / "cp-3.key")])
        without = await asyncio.to_thread(runner.invoke, app, base)
    assert with_cert.exit_code == 0, with_cert.output
    # (the edge in this process logs to the same stdout: the summary is its one JSON line)
    [summary] = [line for line in with_cert.stdout.splitlines() if line.startswith('{"')]
    assert json.loads(summary)["energy_wh"] == 500
    assert without.exit_code != 0 and "HTTP 401" in without.stderr and "--cert-file" in without.stderr
