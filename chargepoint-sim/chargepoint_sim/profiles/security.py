"""Security profiles of the OCPP 1.6 security whitepaper: how the charger opens its connection.

Profile 1 is HTTP Basic auth (user = charger id) on ``ws://``; profile 2 adds TLS on ``wss://``
with the CA of ``ssl_context``; profile 3 is TLS with a client certificate loaded into that
same ``ssl_context``.
"""

from __future__ import annotations

import base64
from typing import Any

from chargepoint_sim.errors import CentralSystemUnreachable
from chargepoint_sim.profiles.base import ChargerBase


class SecurityProfile(ChargerBase):
    """The credentials and TLS options of the WebSocket handshake."""

    def _handshake_options(self) -> dict[str, Any]:
        """Keyword arguments for ``websockets.asyncio.client.connect``: headers and TLS."""
        headers: dict[str, str] = {}
        if self._password is not None:
            # HTTP Basic auth, user = charger id (OCPP 1.6 security whitepaper, Security Profiles 1 and 2).
            token = base64.b64encode(f"{self.charger_id}:{self._password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        options: dict[str, Any] = {"additional_headers": headers}
        if self._ssl is not None:
            if not self.endpoint.startswith("wss://"):
                raise CentralSystemUnreachable(
                    f"a CA file was given but {self.url} is not a wss:// URL: use wss:// for TLS.")
            options["ssl"] = self._ssl
        return options
