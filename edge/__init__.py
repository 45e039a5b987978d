"""The evpark edge agent: OCPP 1.6J central system, local state, store-and-forward uplink and
the site's admin HTTP API (``edge/ADMIN.md``).

Public entry points: :class:`Edge` (composition root), :func:`run_edge`, :class:`EdgeSettings`.

They are imported on first use, not with the package: ``import edge.loadplan`` must not load the
whole agent (FastAPI, uvicorn, pymodbus, the OCPP server), and no module of the edge imports this
package (an import-linter contract in ``pyproject.toml``), so there is no cycle through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edge.app import Edge, run_edge
    from edge.settings import EdgeConfigError, EdgeSettings

__all__ = ["Edge", "EdgeConfigError", "EdgeSettings", "run_edge"]


def __getattr__(name: str) -> Any:
    if name in ("Edge", "run_edge"):
        from edge import app

        value = getattr(app, name)
    elif name in ("EdgeConfigError", "EdgeSettings"):
        from edge import settings

        value = getattr(settings, name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # once: later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
