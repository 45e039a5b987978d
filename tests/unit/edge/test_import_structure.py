"""The edge's modules load what they need and no more, and its import contracts (pyproject.toml)
really catch a cycle through the package ``edge`` or between two of its parts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("cloud", "mqtt", "edge", "evpark", "chargepoint-sim/chargepoint_sim")


def test_a_pure_module_of_the_edge_loads_without_the_agent() -> None:
    code = ("import sys, json, edge.loadplan; print(json.dumps(sorted(m for m in "
            "('fastapi', 'uvicorn', 'pymodbus', 'websockets', 'ocpp', 'edge.app', 'edge.ocpp') if m in sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert json.loads(result.stdout) == []


def test_the_package_still_offers_the_agent_on_first_use() -> None:
    code = "import edge; print(edge.Edge.__module__, edge.EdgeSettings.__module__, edge.run_edge.__module__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.split() == ["edge.app", "edge.settings", "edge.app"]


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{tree}:{tree / 'chargepoint-sim'}", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_a_module_importing_the_package_edge_breaks_the_contract(copy_of_the_tree: Path) -> None:
    handlers = copy_of_the_tree / "edge" / "ocpp" / "handlers.py"
    handlers.write_text(handlers.read_text() + "\nfrom edge import Edge  # noqa\n")  # edge -> edge.app -> ... -> edge
    result = _lint_imports(copy_of_the_tree)
    assert result.returncode == 1, result.stdout
    assert "Illegal imports of protected package edge" in result.stdout
    assert "edge.ocpp.handlers -> edge" in result.stdout


def test_two_parts_of_the_edge_importing_each_other_break_the_contract(copy_of_the_tree: Path) -> None:
    validation = copy_of_the_tree / "edge" / "validation.py"
    validation.write_text(validation.read_text() + "\nimport edge.ocpp.server  # noqa\n")
    result = _lint_imports(copy_of_the_tree)
    assert result.returncode == 1, result.stdout
    assert "No cycles are allowed in edge." in result.stdout
