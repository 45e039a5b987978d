"""A cloud service made in a test, as a developer adds one: files in ``cloud/<name>/`` and one registry line.

The service's folder lives in a temporary directory added to the ``cloud`` package's path, and
the registry line is added for the test's duration only, so nothing of the repository changes.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import cloud
import cloud.registry

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "cloud" / "README.md"
_FILE_BLOCK = re.compile(r"<!-- file: (?P<path>[\w/.]+) -->\n```python\n(?P<code>.*?)```", re.DOTALL)


def guide_files() -> dict[str, str]:
    """The files of the example service in cloud/README.md, by path inside the service's folder."""
    files = {m.group("path"): m.group("code") for m in _FILE_BLOCK.finditer(GUIDE.read_text(encoding="utf-8"))}
    assert files, f"no '<!-- file: … -->' code blocks in {GUIDE}"
    return files


@contextmanager
def added_service(name: str, files: dict[str, str], folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``cloud/<name>/`` made of ``files`` and registered before the gateway, for one test."""
    package = folder / name
    for relative, code in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code, encoding="utf-8")
    monkeypatch.setattr(cloud, "__path__", [*cloud.__path__, str(folder)])
    services = list(cloud.registry.SERVICES)
    monkeypatch.setattr(cloud.registry, "SERVICES", [*services[:-1], name, services[-1]])  # the one registry line
    try:
        yield package
    finally:
        for module in [m for m in sys.modules if m == f"cloud.{name}" or m.startswith(f"cloud.{name}.")]:
            del sys.modules[module]
