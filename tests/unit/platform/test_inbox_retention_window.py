"""The inbox retention window outlives the edge's retention of acknowledged envelopes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cloud.platform.settings import EDGE_ACK_RETENTION_DAYS, CloudSettings
from edge.store.outbox import Retention


def test_the_window_defaults_to_two_weeks_and_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CloudSettings().inbox_retention_days == 14
    monkeypatch.setenv("EVPARK_INBOX_RETENTION_DAYS", "30")
    assert CloudSettings().inbox_retention_days == 30


@pytest.mark.parametrize("days", [7, 3, 0, -1])
def test_a_window_not_longer_than_the_edges_retention_is_refused(days: float) -> None:
    with pytest.raises(ValidationError, match="longer than the 7 days an edge keeps acknowledged envelopes"):
        CloudSettings(inbox_retention_days=days)


def test_the_edge_default_the_cloud_checks_against_is_the_edges() -> None:
    assert Retention().days == EDGE_ACK_RETENTION_DAYS
