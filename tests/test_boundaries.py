"""Import boundaries between the rooms, read from the source (AST), so a violation names its file and line.

- `rules/` imports no dagster, httpx or msal, and nothing from clients, defs, the sandbox or the dev environment:
  pure functions over DataFrames.
- `clients/` imports no dagster, and nothing from defs, the sandbox or the dev environment.
- `sandbox/` imports nothing of the pipeline (clients, rules, defs, schemas, definitions, the write engine, the
  dev environment) and no dagster: it stands in for Halo and Microsoft. Besides itself it may import only the
  *shared modules*: the leaf modules at the package root, which import no dagster, httpx or msal and nothing of
  the package but other shared modules (today `halo_sync_pipeline.halo_api_schema`, Halo's own API schemas that
  both the sandbox and the plan checks validate bodies against, and `halo_sync_pipeline.settings`).

Every import counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "halo_sync_pipeline"
FRAMEWORKS = ("dagster", "httpx", "msal")


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line} imports {self.module}"


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _from_base(node: ast.ImportFrom, path: Path, root: Path) -> str:
    """The absolute module of `from <base> import ...`, relative imports resolved against the file's package."""
    if not node.level:
        return node.module or ""
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path) -> Iterator[Import]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (Import(path, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(node, path, root)
            if base == PACKAGE:  # `from halo_sync_pipeline import rules` imports the room itself
                yield from (Import(path, node.lineno, f"{base}.{alias.name}") for alias in node.names)
            else:
                yield Import(path, node.lineno, base)


def within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def is_framework(module: str, frameworks: tuple[str, ...] = FRAMEWORKS) -> bool:
    """`dagster`, `dagster.x` and the `dagster_*` integrations alike."""
    top = module.split(".")[0]
    return any(top == name or top.startswith(name + "_") for name in frameworks)


def of_package(module: str) -> bool:
    return within(module, (PACKAGE,)) and module != PACKAGE


def pipeline_modules(*names: str) -> tuple[str, ...]:
    return tuple(f"{PACKAGE}.{name}" for name in names)


def shared_modules(root: Path) -> frozenset[str]:
    """Root-level modules that import no framework and nothing of the package but each other."""
    shared = {module_name(p, root) for p in (root / PACKAGE).glob("*.py") if p.name != "__init__.py"}
    changed = True
    while changed:
        changed = False
        for path in (root / PACKAGE).glob("*.py"):
            name = module_name(path, root)
            if name in shared and any(
                is_framework(i.module) or (of_package(i.module) and not within(i.module, tuple(shared)))
                for i in imports_of(path, root)
            ):
                shared.discard(name)
                changed = True
    return frozenset(shared)


@dataclass(frozen=True)
class Boundary:
    room: str
    frameworks: tuple[str, ...]
    modules: tuple[str, ...]
    rule: str

    def forbids(self, module: str) -> bool:
        return is_framework(module, self.frameworks) or within(module, self.modules)


BOUNDARIES = (
    Boundary(
        "rules",
        FRAMEWORKS,
        pipeline_modules("clients", "defs", "definitions", "sandbox", "devenv"),
        "rules import no dagster, httpx or msal, and nothing from clients, defs, sandbox or devenv",
    ),
    Boundary(
        "clients",
        ("dagster",),
        pipeline_modules("defs", "definitions", "sandbox", "devenv"),
        "clients import no dagster, and nothing from defs, sandbox or devenv",
    ),
)


def violations(boundary: Boundary, root: Path) -> list[str]:
    return [
        f"{i.where(root)} ({boundary.rule})"
        for path in sorted((root / PACKAGE / boundary.room).rglob("*.py"))
        for i in imports_of(path, root)
        if boundary.forbids(i.module)
    ]


def sandbox_violations(root: Path) -> list[str]:
    allowed = (f"{PACKAGE}.sandbox", *sorted(shared_modules(root)))
    rule = f"the sandbox imports no dagster and, of this package, only itself and the shared modules {allowed[1:]}"
    return [
        f"{i.where(root)} ({rule})"
        for path in sorted((root / PACKAGE / "sandbox").rglob("*.py"))
        for i in imports_of(path, root)
        if is_framework(i.module, ("dagster",)) or (of_package(i.module) and not within(i.module, allowed))
    ]


@pytest.mark.parametrize("boundary", BOUNDARIES, ids=lambda b: b.room)
def test_room_imports_stay_inside_its_boundary(boundary: Boundary) -> None:
    assert violations(boundary, REPO) == []


def test_sandbox_imports_nothing_of_the_pipeline() -> None:
    assert sandbox_violations(REPO) == []


def test_the_shared_modules_are_the_root_leaves() -> None:
    shared = shared_modules(REPO)
    assert f"{PACKAGE}.definitions" not in shared
    assert f"{PACKAGE}.halo_api_schema" in shared or not (REPO / PACKAGE / "halo_api_schema.py").exists()


def _plant(root: Path, relative: str, source: str) -> None:
    path = root / PACKAGE / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_a_violation_names_its_file_and_line(tmp_path: Path) -> None:
    _plant(tmp_path, "__init__.py", "")
    _plant(tmp_path, "settings.py", "import dataclasses\n")
    _plant(tmp_path, "definitions.py", "import dagster\n")
    _plant(tmp_path, "rules/__init__.py", "")
    _plant(tmp_path, "rules/matching.py", "import pandas\n\n\ndef f():\n    import httpx\n")
    _plant(tmp_path, "clients/__init__.py", "from .halo import HaloClient\n")
    _plant(tmp_path, "clients/halo.py", "from ..defs import resources\n")
    _plant(tmp_path, "sandbox/__init__.py", "")
    _plant(
        tmp_path,
        "sandbox/app.py",
        "from halo_sync_pipeline.settings import X\nfrom . import store\nfrom halo_sync_pipeline import rules\n"
        "from halo_sync_pipeline.definitions import defs\n",
    )
    rules, clients = (violations(b, tmp_path) for b in BOUNDARIES)
    assert [v.split(" (")[0] for v in rules] == ["halo_sync_pipeline/rules/matching.py:5 imports httpx"]
    assert [v.split(" (")[0] for v in clients] == [
        "halo_sync_pipeline/clients/halo.py:1 imports halo_sync_pipeline.defs",
    ]
    assert [v.split(" (")[0] for v in sandbox_violations(tmp_path)] == [
        "halo_sync_pipeline/sandbox/app.py:3 imports halo_sync_pipeline.rules",
        "halo_sync_pipeline/sandbox/app.py:4 imports halo_sync_pipeline.definitions",
    ]
    assert shared_modules(tmp_path) == {"halo_sync_pipeline.settings"}
