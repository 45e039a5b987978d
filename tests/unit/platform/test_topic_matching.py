"""The topic matcher follows RabbitMQ's topic-exchange rules word by word."""

from __future__ import annotations

import pytest

from cloud.platform.events import exchange_for_pattern, topic_matches


@pytest.mark.parametrize(("pattern", "routing_key", "matches"), [
    ("vehicle.registered", "vehicle.registered", True),
    ("vehicle.registered", "vehicle.deleted", False),
    ("vehicle.*", "vehicle.registered", True),
    ("vehicle.*", "vehicle", False),
    ("vehicle.*", "vehicle.id_tag.added", False),
    ("vehicle.#", "vehicle", True),
    ("vehicle.#", "vehicle.registered", True),
    ("vehicle.#", "vehicle.id_tag.added", True),
    ("vehicle.#", "vehicles.registered", False),
    ("#", "anything.at.all", True),
    ("*.registered", "vehicle.registered", True),
    ("*.registered", "vehicle.card.registered", False),
    ("charging.#.completed", "charging.completed", True),
    ("charging.#.completed", "charging.session.completed", True),
    ("charging.#.completed", "charging.a.b.completed", True),
    ("charging.#.completed", "charging.session.started", False),
    ("charging.*.#", "charging", False),
    ("charging.*.#", "charging.x", True),
    ("charging.#.#", "charging", True),
    ("payment.v*", "payment.void", False),  # a wildcard counts only as a whole word
    ("payment.v*", "payment.v*", True),
])
def test_a_pattern_matches_like_a_rabbitmq_topic_binding(pattern: str, routing_key: str, matches: bool) -> None:
    assert topic_matches(pattern, routing_key) is matches


def test_a_binding_pattern_belongs_to_the_exchange_of_its_first_word() -> None:
    assert exchange_for_pattern("vehicle.*") == "vehicle.events"
    assert exchange_for_pattern("charging.session.#") == "charging.events"


@pytest.mark.parametrize("pattern", ["#", "*.registered", "#.completed", "vehicle", ""])
def test_a_pattern_without_a_literal_domain_is_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        exchange_for_pattern(pattern)
