"""Schemathesis against the gateway's one OpenAPI, as a driver and as an operator.

The whole cloud runs in this process (every service on SQLite and the in-process bus, the gateway
served by uvicorn on a free port; see :mod:`tests.support.cloud`). Every operation of the
aggregated document is called with generated examples (``EXAMPLES`` per operation, each as both
callers) and must never answer a 5xx, nor an answer that breaks the schema it documents (status,
body, content type). Bounded: ``EXAMPLES`` examples per operation, ``DEADLINE_S`` for them all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Flaky
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import services
from tests.support.cloud import RunningCloud

pytestmark = pytest.mark.integration

EXAMPLES = 30
"""Generated examples per operation (each sent as a driver and as an operator)."""
DEADLINE_S = 240.0
"""All operations together: past this the remaining ones fail rather than run on."""
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCloud]:
    services.require("Mosquitto", services.MOSQUITTO)
    running = RunningCloud(Path(tmp_path_factory.mktemp("fuzz")), mqtt_username="evpark-cloud",
                           mqtt_topic_root=services.fresh_name("evpark-test-"),
                           rate_limit_per_minute=100_000, rate_limit_writes_per_minute=100_000,
                           rate_limit_public_per_minute=100_000).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api(cloud: RunningCloud) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{cloud.url}/openapi.json")


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


@pytest.mark.timeout(DEADLINE_S + 120)  # the fuzzing's own bound, then the cloud's start and one operation's retry
def test_no_operation_answers_5xx_or_breaks_its_schema(api: schemathesis.BaseSchema, cloud: RunningCloud,
                                                      session: requests.Session) -> None:
    started = time.monotonic()
    failures: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 20, "every service's operations are in the document"
    for operation in operations:
        if time.monotonic() - started > DEADLINE_S:
            failures.append(f"{operation.label}: not run, the fuzzing took longer than {DEADLINE_S:.0f} s")
            continue

        @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        @given(case=operation.as_strategy())
        def call(case: schemathesis.Case) -> None:
            for who in ("driver", "operator"):
                case.call_and_validate(base_url=cloud.url, session=session, checks=CHECKS,
                                       headers={"Authorization": f"Bearer {cloud.tokens[who]}"})

        try:
            call()
        except Flaky as exc:
            # A failure Hypothesis could not reproduce: the machine, not the input (a request that timed
            # out while the other worker loaded both cores). Say what it was, and fuzz the operation once more:
            # a real fault fails again.
            print(f"{operation.label}: not reproducible, fuzzed again: {_described(exc)}")
            try:
                call()
            except (Exception, BaseExceptionGroup) as again:
                failures.append(f"{operation.label} (twice): {_described(again)}")
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports a group of failures
            failures.append(f"{operation.label}: {_described(exc)}")
    print(f"fuzzed {len(operations)} operations x {EXAMPLES} examples x 2 callers in "
          f"{time.monotonic() - started:.1f} s")
    assert failures == [], "\n\n".join(failures)


def _described(exc: BaseException) -> str:
    """The failure and, for a group (schemathesis, Hypothesis's Flaky), each failure in it."""
    parts = [str(exc)]
    if isinstance(exc, BaseExceptionGroup):
        parts += [f"- {type(inner).__name__}: {inner}" for inner in exc.exceptions]
    return "\n".join(parts)[:3000]


def test_the_document_names_every_services_routes_and_their_problems(api: schemathesis.BaseSchema) -> None:
    document = api.raw_schema
    paths = document["paths"]
    for prefix in ("/auth", "/accounts", "/vehicles", "/charging", "/parking", "/billing"):
        assert any(p.startswith(prefix) for p in paths), prefix
    assert "/health" not in paths and "/ready" not in paths
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    login, me = paths["/auth/login"]["post"], paths["/auth/me"]["get"]
    assert login["security"] == [] and me["security"] == [{"bearer": []}]
    assert "401" in me["responses"] and "429" in login["responses"] and "503" in me["responses"]
    assert set(me["responses"]["401"]["content"]) == {"application/problem+json"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
