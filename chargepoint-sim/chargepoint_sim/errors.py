"""What can go wrong when a simulated charger talks to a central system.

* CpsimError — every error of the simulator; its message is one sentence a technician can act on.
    * CentralSystemUnreachable — no OCPP connection: refused, HTTP 404/401, TLS, timeout, bad URL.
    * ConnectionLost — the connection closed while the charger was waiting for an answer.
    * CentralSystemError — the central system answered a CALL with a CALLERROR.
    * AuthorizationRefused — the id tag was not Accepted (Authorize or StartTransaction).
    * ConnectorNotAvailable — the connector is unknown, busy or set Inoperative.
"""

from __future__ import annotations

import socket
import ssl
from urllib.parse import urlsplit

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI


class CpsimError(Exception):
    """Base of every simulator error; ``str(error)`` is meant to be shown as it is."""


class CentralSystemUnreachable(CpsimError):
    """The WebSocket connection to the central system could not be opened."""


class ConnectionLost(CpsimError):
    """The central system closed the connection while the charger still needed it."""


class CentralSystemError(CpsimError):
    """The central system answered a CALL with a CALLERROR."""

    def __init__(self, action: str, code: str, description: str) -> None:
        super().__init__(f"the central system answered {action} with the error {code}: {description}")
        self.action = action
        self.code = code
        self.description = description


class AuthorizationRefused(CpsimError):
    """The central system did not accept the id tag."""

    def __init__(self, id_tag: str, status: str, *, during: str = "Authorize") -> None:
        super().__init__(
            f"the central system refused id tag {id_tag!r} ({status} in {during}): "
            "check that the tag is on the site's authorization list"
        )
        self.id_tag = id_tag
        self.status = status
        self.during = during


class ConnectorNotAvailable(CpsimError):
    """A session was asked for on a connector that cannot start one now."""


def explain_connect_error(exc: BaseException, url: str, charger_id: str, *, has_password: bool,
                          open_timeout: float) -> str:
    """One sentence saying why the connection to ``url`` failed and what to check."""
    host = urlsplit(url).hostname or url
    if isinstance(exc, InvalidURI):
        return f"{url} is not a WebSocket URL: it must start with ws:// or wss:// and name a host."
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        if status == 404:
            return (f"the central system at {url} does not know charger {charger_id!r} (HTTP 404): "
                    "check --charger-id, the URL path, and that the charger is registered on the edge.")
        if status == 401:
            if not has_password:
                return (f"the central system at {url} requires a password for charger {charger_id!r} "
                        "(HTTP 401): pass --password with the charger's AuthorizationKey (or, for Security "
                        "Profile 3, --cert-file with its client certificate).")
            return (f"the central system at {url} rejected the password of charger {charger_id!r} "
                    "(HTTP 401): check --password against the charger's AuthorizationKey on the edge.")
        if status == 403:
            return (f"the central system at {url} forbids charger {charger_id!r} (HTTP 403): "
                    "check the charger's security profile on the edge (a TLS-only charger needs wss://).")
        return (f"the central system at {url} answered the WebSocket upgrade with HTTP {status}: "
                "check that the URL points at the OCPP endpoint.")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"the TLS certificate of {host} could not be verified ({exc.verify_message}): "
                "pass --ca-file with the CA that signed the edge's certificate.")
    if isinstance(exc, ssl.SSLError):
        return (f"the TLS handshake with {url} failed ({exc.reason or exc}): check that the port speaks "
                "TLS and that the scheme (ws:// or wss://) matches it.")
    if isinstance(exc, socket.gaierror):
        return f"the host {host!r} of {url} could not be resolved: check the URL."
    if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        if url.startswith("wss://"):
            return (f"the TLS handshake with {url} failed (the server closed the connection): check that "
                    "the port speaks TLS and that the scheme (ws:// or wss://) matches it.")
        return (f"the central system at {url} closed the connection during the handshake: "
                "check the port and the scheme (ws:// or wss://).")
    if isinstance(exc, ConnectionRefusedError):
        return (f"the central system at {url} refused the connection: "
                "is the edge running and is the port right?")
    if isinstance(exc, TimeoutError):
        return (f"the central system at {url} did not complete the WebSocket handshake within "
                f"{open_timeout:g} s: check host, port, scheme and firewall.")
    if isinstance(exc, InvalidHandshake):
        return (f"the central system at {url} did not complete a WebSocket handshake ({exc}): "
                "check that the URL points at an OCPP endpoint and that the scheme is right.")
    if isinstance(exc, OSError):
        return f"could not connect to the central system at {url} ({exc.strerror or exc}): check the URL."
    return f"could not connect to the central system at {url} ({exc!r})."
