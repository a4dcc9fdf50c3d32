"""lib/ sits below every app: any app may import it, so no module in it may import an app
(DESIGN.md, "dependencies point one way"). Read from the source, so an import hidden inside a
function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lib

APPS = {"accounts", "benchmarks", "costs", "alerts", "gateway", "dashboard", "config"}
MODULES = sorted(Path(lib.__file__).parent.rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    return {name.split(".")[0] for name in names}


def test_lib_has_modules_to_check():
    assert len(MODULES) > 5


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_lib_module_imports_an_app(path):
    assert not imported_packages(path) & APPS, f"{path.name} imports {imported_packages(path) & APPS}"
