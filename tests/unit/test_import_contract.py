"""The import rules of DESIGN.md §3, enforced on the source tree (AST, no imports executed)."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "andon"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        yield ".".join(rel.parts), path


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".", maxsplit=1)[0]


MODULES = list(_modules())


def test_the_tree_is_not_empty() -> None:
    assert len(MODULES) > 20


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_import_rules(module: str, path: Path) -> None:
    imports = _imports(path)
    package = module.split(".")[1] if module.count(".") >= 1 else ""
    problems: list[str] = []
    for name in sorted(imports):
        top = _top(name)
        if package == "domain" and not (top in STDLIB or name.startswith("andon.domain")):
            problems.append(f"domain is pure: imports {name}")
        if package == "sparkplug" and not (
            top in STDLIB or name.startswith(("andon.sparkplug", "google.protobuf"))
        ):
            problems.append(f"sparkplug imports only stdlib and protobuf: imports {name}")
        if package != "cli" and name.startswith("andon.cli"):
            problems.append(f"nothing imports cli: imports {name}")
        if top == "paho" and package != "mqtt":
            problems.append(f"only andon.mqtt imports the MQTT client: imports {name}")
        if top in {"sqlalchemy", "psycopg", "alembic"} and package != "storage":
            problems.append(f"only andon.storage imports SQLAlchemy/psycopg: imports {name}")
        if package in {"domain", "sparkplug"} and top in {"asyncio", "socket", "threading"}:
            problems.append(f"{package} has no IO or concurrency: imports {name}")
    assert not problems, f"{module}: " + "; ".join(problems)
