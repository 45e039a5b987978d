"""Small helpers on top of aiomqtt shared by edge, cloud and simulator."""

from __future__ import annotations

import aiomqtt


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Acknowledge QoS 1 messages only when the application says they are stored.

    aiomqtt acknowledges on receipt; paho (underneath) can defer the PUBACK. We need that
    for "a message is acknowledged only after it is durably stored". MQTT 3.1.1 §4.6 wants
    PUBACKs in receive order, which holds as long as messages are handled one at a time.
    """
    client._client.manual_ack_set(True)


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    if message.qos > 0:
        client._client.ack(message.mid, message.qos)
