"""The edge⇄cloud MQTT contract: topics, envelope, payloads, commands.

Both the edge agent and the cloud import this package; it imports neither of them.
Everything needs only MQTT 3.1.1 (QoS 1, retained messages, persistent sessions).
"""

from mqtt.envelope import (
    Command,
    CommandResult,
    Envelope,
    MalformedMessage,
    decode_command,
    decode_envelope,
    parse_body,
)
from mqtt.payloads import (
    AuthListEntry,
    AuthListUpdate,
    BayOccupancy,
    ChargerBoot,
    ChargerStatus,
    CommandStatus,
    IdTagStatus,
    SessionMeter,
    SessionStarted,
    SessionStopped,
    SiteHello,
)
from mqtt.topics import QOS, RETAINED_TYPES, Topics

__all__ = [
    "QOS",
    "RETAINED_TYPES",
    "AuthListEntry",
    "AuthListUpdate",
    "BayOccupancy",
    "ChargerBoot",
    "ChargerStatus",
    "Command",
    "CommandResult",
    "CommandStatus",
    "Envelope",
    "IdTagStatus",
    "MalformedMessage",
    "SessionMeter",
    "SessionStarted",
    "SessionStopped",
    "SiteHello",
    "Topics",
    "decode_command",
    "decode_envelope",
    "parse_body",
]
