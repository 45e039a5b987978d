"""The import rules of ARCHITECTURE.md hold, and their checks really catch a breach.

``lint-imports`` (import-linter, contracts in pyproject.toml) runs in ``make test``; these tests
prove that its domain-purity contract fails when a domain imports a table, and check over the
registry that no service imports another (so a new service is covered without editing a list).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from cloud.registry import specs

ROOT = Path(__file__).resolve().parents[3]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("cloud", "mqtt", "edge", "evpark", "chargepoint-sim/chargepoint_sim")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    python_path = f"{tree}{':' + str(tree / 'chargepoint-sim')}"
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": python_path, "PATH": "/usr/bin:/bin"})


@pytest.fixture
def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_import_contracts_hold_on_the_code_as_it_is() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_domain_contract_fails_when_a_domain_imports_a_table(copy_of_the_tree: Path) -> None:
    domain = copy_of_the_tree / "cloud" / "charging" / "domain.py"
    domain.write_text(domain.read_text() + "\nfrom cloud.charging.models import ChargingSession  # noqa\n")
    result = lint_imports(copy_of_the_tree)
    assert result.returncode == 1, result.stdout
    assert "A cloud domain is pure" in result.stdout and "BROKEN" in result.stdout
    assert "cloud.charging.domain is not allowed to import cloud.charging.models" in result.stdout


def test_the_domain_contract_fails_when_a_domain_reaches_the_database_indirectly(copy_of_the_tree: Path) -> None:
    helper = copy_of_the_tree / "cloud" / "parking" / "rules_helper.py"
    helper.write_text("import sqlalchemy  # noqa\n")
    domain = copy_of_the_tree / "cloud" / "parking" / "domain.py"
    domain.write_text(domain.read_text() + "\nfrom cloud.parking import rules_helper  # noqa\n")
    result = lint_imports(copy_of_the_tree)
    assert result.returncode == 1, result.stdout
    assert "cloud.parking.domain is not allowed to import sqlalchemy" in result.stdout


def test_no_registered_service_imports_another() -> None:
    graph = grimp.build_graph("cloud", "mqtt", include_external_packages=False)
    # The registry loads every service's spec by name; settings and the gateway read the registry.
    for importer in ("cloud.platform.settings", "cloud.gateway.app"):
        graph.remove_import(importer=importer, imported="cloud.registry")
    names = [spec.name for spec in specs()]
    chains = {
        (a, b): graph.find_shortest_chain(importer=f"cloud.{a}", imported=f"cloud.{b}", as_packages=True)
        for a in names for b in names if a != b
    }
    assert {pair: chain for pair, chain in chains.items() if chain} == {}
