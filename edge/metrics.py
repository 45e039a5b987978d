"""Prometheus metrics of the edge agent (default registry; exposition is the caller's choice)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CONNECTED_CHARGERS = Gauge("evpark_edge_connected_chargers", "chargers with an open OCPP connection")
OCPP_MESSAGES = Counter(
    "evpark_edge_ocpp_messages", "OCPP CALLs received from chargers",
    ["action"],  # an OCPP 1.6 action name, or "unknown" so a charger cannot grow the label set
)
OUTBOX_BACKLOG = Gauge("evpark_edge_outbox_backlog", "uplink envelopes waiting for the broker's PUBACK")
OUTBOX_BYTES = Gauge("evpark_edge_outbox_bytes", "estimated bytes of the uplink envelopes waiting")
OUTBOX_OLDEST_AGE = Gauge("evpark_edge_outbox_oldest_age_seconds",
                          "age of the oldest uplink envelope waiting (0 when none wait)")
OUTBOX_AT_CAP = Gauge("evpark_edge_outbox_at_cap", "1 while the outbox is at its cap ([uplink] in the site file)")
OUTBOX_DROPPED = Counter("evpark_edge_outbox_dropped", "telemetry envelopes dropped or refused at the outbox cap",
                         ["type", "policy"])
OUTBOX_PUBLISHED = Counter("evpark_edge_outbox_published", "uplink envelopes acknowledged by the broker")
MQTT_CONNECTED = Gauge("evpark_edge_mqtt_connected", "1 while the uplink is connected to the broker")
COMMANDS = Counter("evpark_edge_commands", "cloud commands handled", ["status"])
RETENTION_PRUNED = Counter("evpark_edge_outbox_retention_pruned",
                           "acknowledged envelopes forgotten past the retention window ([uplink] retention_*)")
RESENT = Counter("evpark_edge_resent", "kept envelopes published again because the cloud asked (site.resend)")
RESEND_GONE = Counter("evpark_edge_resend_gone",
                      "envelopes the cloud asked for that the store no longer has (dropped at the cap or past "
                      "retention)")
