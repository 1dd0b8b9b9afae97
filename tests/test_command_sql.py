"""Only ``commands/`` names the command tables in SQL (issue 22): the floors above pass it
data and get typed results back, so a rename in ``commands`` cannot break SQL elsewhere at
run time, where import-linter sees nothing.

Held over the source: no module of another package (migrations, tests and ``bench/``
aside) holds a string that names a command table (or one of its partitions), nor reads a
command model's ``_meta.db_table``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from commands.models import CommandHistory, CommandStatus

ROOT = Path(__file__).resolve().parent.parent
MODELS = {model.__name__: model._meta.db_table for model in (CommandStatus, CommandHistory)}
OUTSIDE = ("config", "inventory", "operations", "maintenance", "server")


def _modules() -> list[Path]:
    return [
        path
        for package in OUTSIDE
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def _offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = [table for table in MODELS.values() if table in node.value]
            found += [f"line {node.lineno}: names {table}" for table in named]
        elif isinstance(node, ast.Attribute) and node.attr == "db_table":
            meta = node.value
            if isinstance(meta, ast.Attribute) and meta.attr == "_meta":
                owner = meta.value
                if isinstance(owner, ast.Name) and owner.id in MODELS:
                    found.append(f"line {node.lineno}: reads {owner.id}._meta.db_table")
    return found


def test_the_scan_covers_every_package_above_and_beside_commands() -> None:
    modules = _modules()
    assert {path.relative_to(ROOT).parts[0] for path in modules} == set(OUTSIDE)
    assert ROOT / "operations" / "fanout.py" in modules


def test_no_module_outside_commands_names_the_command_tables() -> None:
    offences = {str(path.relative_to(ROOT)): found for path in _modules() if (found := _offences(path))}
    assert offences == {}, "write the SQL in commands/ and pass it data instead"


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The check itself can fail: a module naming the table, or reading its name, is caught."""
    module = tmp_path / "offender.py"
    module.write_text(
        f'SQL = "UPDATE {MODELS["CommandStatus"]} SET wave = 2"\n'
        "from commands.models import CommandHistory\n"
        "TABLE = CommandHistory._meta.db_table\n"
    )
    assert _offences(module) == [
        f"line 1: names {MODELS['CommandStatus']}",
        "line 3: reads CommandHistory._meta.db_table",
    ]
