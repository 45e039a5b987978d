"""The relay writes each outbox row's envelope straight from its stored body, byte for byte what the
envelope model writes, and counts the broker's PUBACKs per window itself."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge.uplink import _Pubacks
from mqtt.envelope import CommandResult, Envelope, envelope_bytes, parse_body
from mqtt.payloads import (
    METER_MAX_WH,
    ChargerBoot,
    ChargerCall,
    ChargerConnection,
    ChargerNotification,
    ChargerStatus,
    CommandStatus,
    IdTagStatus,
    SessionMeter,
    SessionStarted,
    SessionStopped,
    SiteHello,
)

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
_TEXT = st.text(max_size=12)  # any unicode: escaping must match too
_JSON: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
              _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=10,
)
_TIMES = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2100, 1, 1),
                      timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))]))


def _bodies() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(SessionMeter, charger_id=_TEXT, connector_id=st.integers(0, 10),
                  transaction_id=st.none() | st.integers(-5, 2**40),
                  energy_register_wh=st.none() | st.integers(0, METER_MAX_WH),
                  power_w=st.none() | st.floats(allow_nan=False, allow_infinity=False), sampled_at=_TIMES,
                  clock_suspect=st.booleans()),
        st.builds(ChargerStatus, charger_id=_TEXT, connector_id=st.integers(0, 10), status=_TEXT, error_code=_TEXT,
                  info=st.none() | _TEXT, observed_at=_TIMES, clock_suspect=st.booleans()),
        st.builds(ChargerNotification, charger_id=_TEXT, action=_TEXT,
                  payload=st.dictionaries(_TEXT, _JSON, max_size=3), received_at=_TIMES),
        st.builds(ChargerCall, charger_id=_TEXT, action=_TEXT, origin=_TEXT,
                  request=st.dictionaries(_TEXT, _JSON, max_size=3), outcome=st.sampled_from(["result", "timeout"]),
                  response=st.none(), sent_at=_TIMES),
        st.builds(CommandResult, command_id=st.uuids(), command_type=_TEXT, status=st.sampled_from(CommandStatus),
                  detail=st.none() | _TEXT, data=st.dictionaries(_TEXT, _JSON, max_size=3)),
        st.just(SessionStarted(charger_id="CP-1", connector_id=1, transaction_id=7, id_tag="tag",
                               id_tag_status=IdTagStatus.ACCEPTED, meter_start_wh=10, started_at=NOW)),
        st.just(SessionStopped(charger_id="CP-1", transaction_id=7, meter_stop_wh=20, energy_wh=10, stopped_at=NOW)),
        st.just(ChargerBoot(charger_id="CP-ü", vendor="v", model="m", registration_status="Accepted")),
        st.just(ChargerConnection(charger_id="CP-1", online=False, at=NOW, reason="gone")),
        st.just(SiteHello(edge_version="1.2.3", authlist_version=0)),
    )


@settings(max_examples=300, deadline=None)
@given(body=_bodies(), seq=st.integers(1, 2**62), ts=_TIMES, envelope_id=st.uuids(),
       store_id=st.none() | st.uuids().map(lambda u: u.hex))
def test_envelope_from_a_stored_row_is_the_models_envelope_byte_for_byte(
        body: Any, seq: int, ts: datetime, envelope_id: uuid.UUID, store_id: str | None) -> None:
    # What the store keeps (model_dump_json) and hands back to the relay (json.loads).
    stored = json.loads(body.model_dump_json())
    expected = Envelope.wrap("site-1", seq, parse_body(body.TYPE, stored), id=envelope_id, ts=ts,
                             store_id=store_id).to_bytes()
    assert envelope_bytes("site-1", seq, body.TYPE, stored, id=envelope_id, ts=ts, store_id=store_id) == expected


@pytest.mark.parametrize(("site_id", "seq", "ts", "store_id"), [
    ("site-1", 0, NOW, None),  # seq >= 1
    ("site-1", 1, NOW.replace(tzinfo=None), None),  # a UTC offset is required
    ("site/1", 1, NOW, None),  # one topic level
    ("site-1", 1, NOW, ""),  # a store id is 1-64 letters, digits, _ or -
    ("site-1", 1, NOW, "a/b"),
    ("site-1", 1, NOW, "x" * 65),
])
def test_envelope_fields_are_checked_as_the_model_checks_them(site_id: str, seq: int, ts: datetime,
                                                              store_id: str | None) -> None:
    with pytest.raises(ValueError):
        envelope_bytes(site_id, seq, "site.hello", {"edge_version": "1", "authlist_version": 0}, id=uuid.uuid4(), ts=ts,
                       store_id=store_id)
    if store_id is not None:
        with pytest.raises(ValueError):
            Envelope.wrap(site_id, seq, SiteHello(edge_version="1", authlist_version=0), store_id=store_id)


class _FakeAiomqtt:
    """Just what _Pubacks touches: the paho client underneath, with aiomqtt's on_publish installed."""

    def __init__(self) -> None:
        self.forwarded: list[int] = []
        self._client = type("Paho", (), {})()
        self._client.on_publish = lambda client, userdata, mid, reason_code, properties: self.forwarded.append(mid)


def _puback(pubacks: _Pubacks, mid: int, code: str = "Success") -> None:
    pubacks._paho.on_publish(pubacks._paho, None, mid, ReasonCode(PacketTypes.PUBACK, code),
                             Properties(PacketTypes.PUBACK))


async def test_a_window_completes_with_its_last_puback_and_counts_only_acknowledged_rows() -> None:
    client = _FakeAiomqtt()
    pubacks = _Pubacks(client)  # type: ignore[arg-type]
    window = pubacks.open()
    for mid, seq in ((11, 101), (12, 102), (13, 103)):
        window.expect(mid, seq)
    _puback(pubacks, 11)
    _puback(pubacks, 99)  # not the relay's: aiomqtt's own callback gets it
    _puback(pubacks, 13, "Unspecified error")  # refused (MQTT 5 only): the row stays in the outbox
    assert window.waiting == {12: 102}
    _puback(pubacks, 12)
    await window.all_acknowledged()
    assert sorted(window.acked) == [101, 102]
    assert client.forwarded == [99]


async def test_a_puback_of_an_earlier_window_goes_to_aiomqtt() -> None:
    client = _FakeAiomqtt()
    pubacks = _Pubacks(client)  # type: ignore[arg-type]
    pubacks.open().expect(1, 1)
    current = pubacks.open()  # e.g. after a timeout
    _puback(pubacks, 1)
    assert client.forwarded == [1]
    await current.all_acknowledged()  # nothing expected: done at once
    assert current.acked == []
