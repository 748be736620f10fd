"""Dependencies point one way: ``schemas/`` imports nothing of ours (wire formats, the ticket included);
``detectors/`` and ``dispatch/`` stay pure and never import ``streams/`` or ``elderwatch/``. Checked on the
source (imports inside functions too), so a shortcut fails here rather than in a review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OURS = {"schemas", "detectors", "dispatch", "streams", "elderwatch", "bench"}
ALLOWED = {
    "schemas": {"schemas"},
    "detectors": {"detectors", "schemas"},
    "dispatch": {"dispatch", "schemas"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependencies_point_one_way(package):
    wrong = {str(path.relative_to(REPO)): sorted(_imports(path) - ALLOWED[package])
             for path in sorted((REPO / package).rglob("*.py"))}
    assert {path: names for path, names in wrong.items() if names} == {}


def test_test_modules_have_unique_names():
    """pytest imports test modules by basename (no packages under tests/): two files of one name stop the
    whole collection, in CI only if a cache hides it locally."""
    names: dict[str, list[str]] = {}
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        names.setdefault(path.name, []).append(str(path.relative_to(REPO)))
    assert {name: paths for name, paths in names.items() if len(paths) > 1} == {}
