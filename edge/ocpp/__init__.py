"""The OCPP 1.6J central system of the site, served over WebSockets.

Chargers connect to ``ws://<host>:<port>/ocpp/<chargePointId>`` (percent-encoded id) with
subprotocol ``ocpp1.6``. Each connection is a :class:`ChargerConnection` (the ``ocpp``
library's v16 ChargePoint) whose handlers turn a CALL into one call on :class:`edge.site.Site`
and return its answer. This package owns only the protocol quirks:

* OCPP-J 1.6 §3 (connection): an unknown charger id gets HTTP 404 at the handshake; a connection that
  offers no acceptable subprotocol completes the handshake without one and is closed.
* OCPP-NOTES "Status": a second connection with the same charger id replaces the first.
* OCPP-J 1.6 §4.2.3: error codes keep the 1.6 spelling on the wire (the ``ocpp`` library
  emits the 2.0.1 "FormatViolation"); a malformed CALL gets a CALLERROR when its id can be
  read; the connection stays up.
* CALLs other than BootNotification from a charger whose boot was never accepted get a
  SecurityError. The accepted state is in SQLite, so a plain reconnect keeps it.
* The central system never awaits its own CALL to a charger inside the handler of that
  charger's CALL (it would deadlock: one outstanding CALL per direction). CALLs to chargers
  (:meth:`OcppServer.call`) come from the admin API, cloud commands and background tasks,
  one at a time per connection; a CALLRESULT nobody waits for is dropped.
* Security profiles 1 and 2 (OCPP 1.6 security whitepaper): HTTP Basic auth on the upgrade
  request, checked against the charger's stored key; wrong or missing credentials get 401, a
  profile 2 charger on a connection without TLS gets 401 too (never downgraded). Profile 3: a client
  certificate of the charger CA (the TLS handshake refuses an expired or foreign one) whose subject CN
  is the charger id, else 401.
* Liveness (OCPP-NOTES "Status"): WebSocket pings, and a deadline on the time since the
  charger's last message; a charger that misses either is closed and reported offline.
* Every CALL gets an answer: an unexpected failure is answered with InternalError, and numbers a
  SQLite column cannot hold get PropertyConstraintViolation, as does a meterStart/meterStop above
  :data:`mqtt.payloads.METER_MAX_WH`. A meter value beyond it is kept out of the figures
  (:func:`edge.domain.read_sampled_values`) and relayed as a ``session.anomaly``.
* The hot actions (MeterValues, Heartbeat, StatusNotification) of an accepted charger take a
  fast path (:mod:`edge.ocpp.fastpath`): the compiled 1.6 schema (:mod:`edge.validation`, compiled
  by the composition root) instead of the library's interpreted one in a thread pool, memoised key
  conversion, and the same ``@on`` handler and answer. A payload the compiled schema refuses goes
  down the library's path, so the CALLERROR is the library's, word for word.

The modules:

* :mod:`edge.ocpp.server`: the WebSocket server (handshake, security profiles, liveness, CALLs to
  chargers);
* :mod:`edge.ocpp.connection`: one connection's framing rules, the fast path's dispatch, CALLs out;
* :mod:`edge.ocpp.handlers`: the ``@on`` handlers;
* :mod:`edge.ocpp.fastpath` and :mod:`edge.ocpp.codec`: the hot path's conversions and the frame codec.

Imports inside this package are absolute (``edge.ocpp.x``): ``import ocpp`` is always the library.
"""

from edge.ocpp.fastpath import FAST_ACTIONS
from edge.ocpp.handlers import ChargerConnection, ocpp_time
from edge.ocpp.server import PATH_PREFIX, SUBPROTOCOL, OcppServer, certificate_cn, charger_id_from_path

__all__ = ["FAST_ACTIONS", "PATH_PREFIX", "SUBPROTOCOL", "ChargerConnection", "OcppServer", "certificate_cn",
           "charger_id_from_path", "ocpp_time"]
