"""Every module of ``config/`` is held by a floor contract of ``pyproject.toml``: plumbing
(may import no app) or the top floor. A new module cannot slip between them unchecked."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def test_every_config_module_is_plumbing_or_top_floor() -> None:
    contracts = _contracts()
    plumbing = next(c for c in contracts if c["type"] == "forbidden")["source_modules"]
    top = next(c for c in contracts if c["type"] == "layers")["layers"][0].replace(" ", "").split("|")
    held = [*plumbing, *top]

    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in (ROOT / "config").rglob("*.py")
        if path.name != "__init__.py"
    }
    loose = sorted(m for m in modules if not any(m == h or m.startswith(h + ".") for h in held))
    assert loose == [], f"add these to a contract in pyproject.toml: {loose}"
