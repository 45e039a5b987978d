"""The embedded MQTT broker of ``evpark up`` (amqtt, MQTT 3.1.1).

Clients must send a user name: amqtt keeps QoS 1 messages for disconnected persistent
sessions only for non-anonymous clients. Sessions and queued messages are stored in SQLite
in the data folder, so a restart of ``evpark up`` loses nothing that was queued.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from amqtt.broker import Broker

EMBEDDED_USER = "evpark"


class EmbeddedBroker:
    def __init__(self, host: str, port: int, data_dir: Path) -> None:
        self.host = host
        self.port = port
        self._data_dir = data_dir
        self._broker: Broker | None = None

    def _config(self) -> dict[str, Any]:
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                # Any client with a user name gets in; see the module docstring.
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": False},
                "amqtt.contrib.persistence.SessionDBPlugin": {
                    "connection": f"sqlite+aiosqlite:///{(self._data_dir / 'broker.db').as_posix()}",
                    "clear_on_shutdown": False,
                },
            },
        }

    async def __aenter__(self) -> EmbeddedBroker:
        logging.getLogger("amqtt").setLevel(logging.WARNING)
        self._broker = Broker(self._config())
        await self._broker.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None
