"""OCPP-NOTES "Security profiles", the charger registry and Pending registration, over real WebSockets."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from ocpp.exceptions import SecurityError
from ocpp.v16 import ChargePoint, call
from ocpp.v16.enums import RegistrationStatus
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage, InvalidStatus
from websockets.typing import Subprotocol

from edge import Edge, EdgeSettings
from tests.integration.edge.charger import AnsweringCharger, boot_notification, running

pytestmark = pytest.mark.integration

KEY = "0123456789abcdef-key"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def handshake_status(port: int, charger_id: str, headers: dict[str, str] | None = None, *,
                           tls: ssl.SSLContext | None = None) -> int:
    scheme = "wss" if tls else "ws"
    try:
        async with connect(f"{scheme}://127.0.0.1:{port}/ocpp/{quote(charger_id, safe='')}",
                           subprotocols=[Subprotocol("ocpp1.6")], additional_headers=headers, ssl=tls,
                           open_timeout=5):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def client_tls(cert: Path, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    if maximum is not None:
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = maximum
    return context


async def test_profile_1_needs_basic_auth_with_the_chargers_own_key_else_401(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(accept_unknown_chargers=False)) as edge:
        await edge.site.set_auth_key("CP-1", KEY, 1)
        port = edge.ocpp_port
        assert await handshake_status(port, "CP-1") == 401
        assert await handshake_status(port, "CP-1", basic("CP-1", KEY + "x")) == 401
        assert await handshake_status(port, "CP-1", basic("CP-2", KEY)) == 401
        assert await handshake_status(port, "CP-1", {"Authorization": "Basic !!!"}) == 401
        assert await handshake_status(port, "CP-1", basic("CP-1", KEY)) == 101
        assert await handshake_status(port, "CP-UNKNOWN", basic("CP-UNKNOWN", KEY)) == 404
        record = await edge.store.get_charger("CP-1")
    assert record is not None and record.security_profile == 1
    assert record.auth_key_hash is not None and KEY not in record.auth_key_hash  # never stored in clear


async def test_profile_2_needs_tls_1_2_or_newer_and_basic_auth(
        make_settings: Callable[..., EdgeSettings], certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    async with Edge(make_settings(accept_unknown_chargers=False, ocpp_tls_cert=cert, ocpp_tls_key=key)) as edge:
        await edge.site.set_auth_key("CP-1", KEY, 2)
        port = edge.ocpp_port
        assert await handshake_status(port, "CP-1", tls=client_tls(cert)) == 401
        assert await handshake_status(port, "CP-1", basic("CP-1", "wrong-key-0123456"), tls=client_tls(cert)) == 401
        async with connect(f"wss://127.0.0.1:{port}/ocpp/CP-1", subprotocols=[Subprotocol("ocpp1.6")],
                           additional_headers=basic("CP-1", KEY), ssl=client_tls(cert)) as ws:
            assert ws.transport.get_extra_info("ssl_object").version() in {"TLSv1.2", "TLSv1.3"}
            cp = ChargePoint("CP-1", ws, response_timeout=5)
            async with running(cp):
                assert (await boot_notification(cp)).status == RegistrationStatus.accepted
        with pytest.raises((ssl.SSLError, OSError)):
            await handshake_status(port, "CP-1", basic("CP-1", KEY), tls=client_tls(cert, ssl.TLSVersion.TLSv1_1))


async def test_a_profile_2_charger_on_a_plain_connection_gets_401_and_profiles_are_never_downgraded(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings()) as edge:
        await edge.site.set_auth_key("CP-1", KEY, 2)
        assert await handshake_status(edge.ocpp_port, "CP-1", basic("CP-1", KEY)) == 401
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
            downgrade = await admin.put("/chargers/CP-1/auth-key",
                                        json={"authorization_key": KEY, "security_profile": 1})
            too_short = await admin.put("/chargers/CP-1/auth-key", json={"authorization_key": "short"})
            rotated = await admin.put("/chargers/CP-1/auth-key",
                                      json={"authorization_key": KEY[::-1], "security_profile": 2})
    assert downgrade.status_code == 409 and "never downgraded" in downgrade.json()["detail"]
    assert too_short.status_code == 422
    assert rotated.status_code == 204


async def test_an_admin_set_key_lets_a_registered_charger_in_with_basic_auth(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(accept_unknown_chargers=False)) as edge, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        assert (await admin.put("/chargers/CP-7/auth-key", json={"authorization_key": KEY})).status_code == 204
        assert await handshake_status(edge.ocpp_port, "CP-7") == 401
        assert await handshake_status(edge.ocpp_port, "CP-7", basic("CP-7", KEY)) == 101
        [listed] = (await admin.get("/chargers")).json()
    assert (listed["id"], listed["security_profile"]) == ("CP-7", 1)


async def test_an_unknown_charger_is_registered_as_pending_until_an_operator_accepts_it(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(unknown_chargers_pending=True)) as edge, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        async with connect(f"ws://127.0.0.1:{edge.ocpp_port}/ocpp/CP-NEW",
                           subprotocols=[Subprotocol("ocpp1.6")]) as ws:
            cp = AnsweringCharger("CP-NEW", ws, response_timeout=5)
            async with running(cp):
                first = await boot_notification(cp)
                assert first.status == RegistrationStatus.pending
                with pytest.raises(SecurityError):
                    await cp.call(call.Heartbeat(), suppress=False)
                remote = await admin.post("/chargers/CP-NEW/calls/RemoteStartTransaction", json={"idTag": "T"})
                assert remote.status_code == 409 and remote.json()["title"] == "Charger not accepted"
                assert (await admin.get("/chargers/CP-NEW")).json()["registration_status"] == "Pending"

                accepted = await admin.post("/chargers/CP-NEW/accept")
                assert accepted.json()["boot_triggered"] is True
                assert cp.received == [("TriggerMessage", {"requested_message": "BootNotification"})]
                assert (await boot_notification(cp)).status == RegistrationStatus.accepted
                await cp.call(call.Heartbeat(), suppress=False)
        boots = [row.body["registration_status"] for row in await edge.store.outbox_batch(100)
                 if row.type == "charger.boot"]
    assert boots == ["Pending", "Accepted"]


async def test_accepting_an_unknown_charger_is_404(edge: Edge) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        response = await admin.post("/chargers/NOPE/accept")
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


async def test_an_operator_registers_a_charger_so_it_may_connect(make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(accept_unknown_chargers=False)) as edge, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        assert await handshake_status(edge.ocpp_port, "CP-3") == 404
        assert (await admin.put("/chargers/CP-3")).status_code == 201
        assert await handshake_status(edge.ocpp_port, "CP-3") == 101
        await asyncio.sleep(0)


# --- Security Profile 3: TLS with client certificates -----------------------------------------

def _name(cn: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: str, issuer: tuple[Any, str] | None, *, ca: bool = False, days: tuple[int, int] = (-1, 30),
                 server: bool = False) -> tuple[Any, Any]:
    """A key and a certificate for ``subject``, signed by ``issuer`` (its key and CN), self-signed without one."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    signer_key, signer_cn = issuer if issuer is not None else (key, subject)
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(signer_cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + timedelta(days=days[0])).not_valid_after(now + timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        loopback = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        builder = builder.add_extension(x509.SubjectAlternativeName([loopback]), critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


def _write(folder: Path, name: str, key: Any, cert: Any) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization

    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """A charger CA, a server certificate, and charger certificates: valid, expired, of another CA, of another id."""
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca = _certificate("evpark chargers CA", None, ca=True)
    other_key, _ = _certificate("someone else's CA", None, ca=True)
    files = {"ca": _write(folder, "ca", ca_key, ca)}
    files["server"] = _write(folder, "server", *_certificate("127.0.0.1", (ca_key, "evpark chargers CA"), server=True))
    for name, cn, issuer, days in (("valid", "CP-3", (ca_key, "evpark chargers CA"), (-1, 30)),
                                   ("expired", "CP-3", (ca_key, "evpark chargers CA"), (-30, -1)),
                                   ("wrong_ca", "CP-3", (other_key, "someone else's CA"), (-1, 30)),
                                   ("wrong_id", "CP-4", (ca_key, "evpark chargers CA"), (-1, 30))):
        files[name] = _write(folder, name, *_certificate(cn, issuer, days=days))
    return files


def charger_tls(pki: dict[str, tuple[Path, Path]], certificate: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki["ca"][0]))
    if certificate is not None:
        context.load_cert_chain(*pki[certificate])
    return context


async def tls_outcome(port: int, charger_id: str, tls: ssl.SSLContext, headers: dict[str, str] | None = None) -> str:
    """"101" (connected), the HTTP status of a refused upgrade, or "tls refused" when the TLS handshake failed."""
    try:
        async with connect(f"wss://127.0.0.1:{port}/ocpp/{charger_id}", subprotocols=[Subprotocol("ocpp1.6")],
                           additional_headers=headers, ssl=tls, open_timeout=5) as ws:
            cp = ChargePoint(charger_id, ws, response_timeout=5)
            async with running(cp):
                assert (await boot_notification(cp)).status == RegistrationStatus.accepted
            return "101"
    except InvalidStatus as refused:
        return str(refused.response.status_code)
    except (ssl.SSLError, ConnectionError, InvalidMessage, ConnectionClosed, EOFError):
        return "tls refused"


async def test_profile_3_needs_a_client_certificate_of_the_charger_ca_that_names_the_charger(
        make_settings: Callable[..., EdgeSettings], pki: dict[str, tuple[Path, Path]]) -> None:
    server_cert, server_key = pki["server"]
    async with Edge(make_settings(accept_unknown_chargers=False, ocpp_tls_cert=server_cert, ocpp_tls_key=server_key,
                                  ocpp_tls_client_ca=pki["ca"][0])) as edge, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge.admin_port}") as admin:
        assert (await admin.put("/chargers/CP-3/security-profile", json={"security_profile": 3})).status_code == 204
        await edge.site.set_auth_key("CP-2", KEY, 2)  # a profile 2 charger on the same endpoint, without a certificate
        port = edge.ocpp_port
        outcomes = {name: await tls_outcome(port, "CP-3", charger_tls(pki, name))
                    for name in ("valid", "expired", "wrong_ca", "wrong_id", None)}
        with_key_only = await tls_outcome(port, "CP-3", charger_tls(pki, None), basic("CP-3", KEY))
        profile_2 = await tls_outcome(port, "CP-2", charger_tls(pki, None), basic("CP-2", KEY))
        downgrade = await admin.put("/chargers/CP-3/auth-key", json={"authorization_key": KEY, "security_profile": 2})
        down_profile = await admin.put("/chargers/CP-3/security-profile", json={"security_profile": 1})
        listed = (await admin.get("/chargers/CP-3")).json()["security_profile"]
    assert outcomes == {"valid": "101", "expired": "tls refused", "wrong_ca": "tls refused", "wrong_id": "401",
                        None: "401"}
    assert (with_key_only, profile_2) == ("401", "101")
    assert (downgrade.status_code, down_profile.status_code, listed) == (409, 409, 3)
    assert "never downgraded" in downgrade.json()["detail"]


async def test_a_minimum_security_profile_refuses_chargers_anyone_could_impersonate(
        make_settings: Callable[..., EdgeSettings]) -> None:
    async with Edge(make_settings(min_security_profile=1)) as edge:
        await edge.store.register_charger("CP-0")  # profile 0: no credentials at all
        await edge.site.set_auth_key("CP-1", KEY, 1)
        port = edge.ocpp_port
        outcomes = (await handshake_status(port, "CP-0"), await handshake_status(port, "CP-NEW"),
                    await handshake_status(port, "CP-1", basic("CP-1", KEY)))
    assert outcomes == (401, 401, 101)
