"""The README's tables of services agree with the registry: each service's port option, its
default port, and the command that serves it in production."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud.registry import specs

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_the_make_up_table_names_each_service_with_its_port_and_option(spec: object) -> None:
    name, port = spec.name, spec.port  # type: ignore[attr-defined]
    rows = [line for line in README.splitlines() if line.startswith("|") and f"`--{name}-port`" in line]
    assert rows, f"README's `make up` table has no row with --{name}-port"
    assert f"http://127.0.0.1:{port}`" in rows[0], rows[0]


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_the_production_commands_serve_each_service_on_its_port(spec: object) -> None:
    name, port = spec.name, spec.port  # type: ignore[attr-defined]
    assert re.search(rf"^evpark serve {name} +# :{port}\b", README, re.MULTILINE), \
        f"no `evpark serve {name}  # :{port}`"


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_the_configuration_table_gives_each_services_port_variable(spec: object) -> None:
    name, port = spec.name.upper(), spec.port  # type: ignore[attr-defined]
    row = next((line for line in README.splitlines() if "listen ports" in line), "")
    assert (f"EVPARK_{name}_PORT" in row or f"_{name}_PORT" in row) and f"`{port}`" in row, row
