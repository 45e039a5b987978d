"""The evpark edge agent: OCPP 1.6J central system, local state, store-and-forward uplink and
the site's admin HTTP API (``edge/ADMIN.md``).

Public entry points: :class:`Edge` (composition root), :func:`run_edge`, :class:`EdgeSettings`.
"""

from edge.app import Edge, run_edge
from edge.settings import EdgeConfigError, EdgeSettings

__all__ = ["Edge", "EdgeConfigError", "EdgeSettings", "run_edge"]
