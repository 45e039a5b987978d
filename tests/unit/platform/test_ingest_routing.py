"""Partitioned ingest: how the bridge routes a topic, and the settings it refuses (cloud/platform/ingest.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.platform.ingest import pack, partition_of, partition_queue, routing_of, unpack
from cloud.platform.partitions import postgres_dsn
from cloud.platform.settings import CloudSettings
from mqtt import Topics


def test_a_site_always_lands_in_the_same_partition_whatever_the_process() -> None:
    # crc32, not Python's salted hash(): the bridge and every replica must agree across restarts
    assert partition_of("garage-north", 12) == 5
    assert {partition_of(f"site-{n}", 12) for n in range(200)} == set(range(12))


def test_the_bridge_routes_uplink_and_status_topics_by_category_and_partition() -> None:
    topics = Topics("fleet/eu")
    site, p = "garage-north", partition_of("garage-north", 12)
    assert routing_of(topics, "fleet/eu/sites/garage-north/up/session", 12) == (site, f"session.{p}")
    assert routing_of(topics, "fleet/eu/sites/garage-north/up/site/hello", 12) == (site, f"site.{p}")
    assert routing_of(topics, "fleet/eu/sites/garage-north/status", 12) == (site, f"status.{p}")
    assert routing_of(topics, "fleet/eu/sites/garage-north/down/command", 12) is None
    assert routing_of(topics, "other/sites/garage-north/up/session", 12) is None
    assert partition_queue("charging", 3) == "charging.uplink.p03"


def test_partitioned_ingest_refuses_to_start_without_rabbitmq_or_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="EVPARK_AMQP_URL"):
        CloudSettings(ingest="partitioned", database_url="postgresql+asyncpg://db/evpark_{service}")
    with pytest.raises(ValidationError, match="PostgreSQL"):
        CloudSettings(ingest="partitioned", amqp_url="amqp://guest:guest@mq/")
    with pytest.raises(ValidationError, match="ingest_partitions"):
        CloudSettings(ingest_partitions=0)
    settings = CloudSettings(ingest="partitioned", amqp_url="amqp://guest:guest@mq/",
                             database_url="postgresql+asyncpg://u@db:5432/evpark_{service}")
    assert postgres_dsn(settings.database_url_for("charging")) == "postgresql://u@db:5432/evpark_charging"


def test_an_uplink_batch_carries_its_messages_in_order_and_a_foreign_body_is_refused() -> None:
    pairs = [("evpark/sites/a/up/session", b'{"seq": 1}'), ("evpark/sites/a/status", b""),
             ("evpark/sites/a/up/session", "{\"plate\": \"ÄÖ 1\"}".encode())]
    assert unpack(pack(pairs)) == pairs
    assert unpack(b"") == []
    with pytest.raises(ValueError, match="uplink batch"):
        unpack(pack(pairs)[:-3])
    with pytest.raises(ValueError, match="uplink batch"):
        unpack(b'{"not": "a batch"}')
