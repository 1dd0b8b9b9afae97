"""The floor contracts of ``pyproject.toml`` name whole packages, and every project package is
one of the floors: a new package (or a module cut out of one) cannot slip outside what
``lint-imports`` checks, and ``config/`` stays the ground, importing no app."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

#: Top-level folders that are no project package: the tests and benchmarks import every floor,
#: and the rest hold no code of the server's.
NOT_FLOORS = {"tests", "bench", ".venv", "var", "docs", "static", "templates"}


def _importlinter() -> dict[str, Any]:
    table: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return table


def _layers() -> list[list[str]]:
    """The floors of the one layers contract, top first; each a list of its ``|`` siblings."""
    contracts = [c for c in _importlinter()["contracts"] if c["type"] == "layers"]
    assert len(contracts) == 1, "one layers contract holds the floors"
    return [[name.strip() for name in layer.split("|")] for layer in contracts[0]["layers"]]


def _project_packages() -> set[str]:
    return {
        path.name
        for path in ROOT.iterdir()
        if path.is_dir() and (path / "__init__.py").is_file() and path.name not in NOT_FLOORS
    }


def test_the_floors_name_packages_not_modules() -> None:
    names = [name for layer in _layers() for name in layer]
    dotted = [name for name in names if "." in name]
    assert dotted == [], f"a floor is a whole package, not a module of one: {dotted}"


def test_every_project_package_is_a_floor() -> None:
    packages = _project_packages()
    assert {"config", "server"} <= packages  # the scan sees the repository's packages at all
    floors = {name for layer in _layers() for name in layer}
    assert sorted(packages - floors) == [], "add these packages to the floors in pyproject.toml"
    assert sorted(floors - packages) == [], "these floors are no package of the repository"


def test_every_floor_is_analysed_and_checked_for_import_circles() -> None:
    floors = {name for layer in _layers() for name in layer}
    importlinter = _importlinter()
    acyclic = next(c for c in importlinter["contracts"] if c["type"] == "acyclic_siblings")
    assert set(importlinter["root_packages"]) == floors
    assert set(acyclic["ancestors"]) == floors


def test_config_is_the_ground_floor_and_server_the_top() -> None:
    """config/ is plumbing (it imports no app); server/ (the URLconf, the dashboard, runstack)
    may import every app."""
    layers = _layers()
    assert layers[-1] == ["config"]
    assert layers[0] == ["server"]
