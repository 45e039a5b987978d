"""A stand-in for a service's MQTT link in use-case tests: it records the commands sent to sites."""

from __future__ import annotations

from cloud.platform.mqtt_link import NotConnected
from mqtt import Command


class RecordingSender:
    """A site link that records the commands it sends; ``connected = False`` makes it refuse."""

    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.connected = True

    async def send_command(self, command: Command) -> None:
        if not self.connected:
            raise NotConnected("no broker")
        self.commands.append(command)
