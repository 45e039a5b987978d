"""Prometheus metrics shared by every cloud service (label ``service`` tells them apart)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "evpark_http_requests_total", "HTTP requests answered", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "evpark_http_request_duration_seconds", "HTTP request latency", ["service", "method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_BACKLOG = Gauge("evpark_outbox_backlog", "events waiting in the outbox", ["service"])
EVENTS_PUBLISHED = Counter("evpark_events_published_total", "events confirmed by the bus", ["service", "event"])
MESSAGES_CONSUMED = Counter(
    "evpark_messages_consumed_total", "events and MQTT messages handled",
    ["service", "consumer", "outcome"],  # outcome: handled | duplicate | parked
)
LOOP_UP = Gauge("evpark_background_loop_up", "1 while a supervised background loop runs", ["service", "loop"])
LOOP_RESTARTS = Counter(
    "evpark_background_restarts_total", "supervised background loops restarted after dying", ["service", "loop"]
)
UPLINK_RESEND_REQUESTS = Counter(
    "evpark_uplink_resend_requests_total", "site.resend commands sent for envelopes a site's stream misses",
    ["service", "category"],
)
UPLINK_GONE = Counter(
    "evpark_uplink_gone_total", "missed envelopes the edge no longer had (dropped at its cap or past its retention)",
    ["service", "category"],
)
UPLINK_LOST = Counter(
    "evpark_uplink_lost_total", "missed envelopes given up: no answer after every try, or a replaced edge store",
    ["service", "category"],
)
