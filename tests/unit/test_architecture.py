"""The folders tell the architecture: imports point one way (edges -> workflows -> steps ->
db -> ground), no two project modules import each other in a cycle, modules stay small and
folders few-roomed, and stages reach the engine only through `steps`' public face.
Read from the source with `ast`: every import counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("reelflow", "db", "steps", "workflows", "api", "cli")
#: Lower floors first; a module may import its own floor and the floors below.
FLOORS = ("ground", "db", "steps", "workflows", "edges")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "versions" in path.parts:  # migrations: frozen history, not architecture
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def floor(module: str) -> str:
    if module.startswith(("api", "cli")) or module == "reelflow.__main__":
        return "edges"
    return "ground" if module.startswith("reelflow") else module.split(".")[0]


def _resolve(name: str) -> str | None:
    """The project module an import names (the longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    tree = ast.parse(MODULES[module].read_text())
    out = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            target = _resolve(name)
            if target and target != module and not module.startswith(f"{target}."):
                out.add(target)
    return out


GRAPH = {m: imports_of(m) for m in MODULES}


def test_imports_point_down_the_floors() -> None:
    wrong = sorted(
        f"{m} ({floor(m)}) imports {t} ({floor(t)})"
        for m, targets in GRAPH.items()
        for t in targets
        if FLOORS.index(floor(t)) > FLOORS.index(floor(m))
    )
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, cycles


def test_the_ground_floor_imports_nothing_above_it() -> None:
    ground = [m for m in MODULES if floor(m) == "ground"]
    assert {"reelflow.settings", "reelflow.celery_app", "reelflow.errors"} <= set(ground)
    for module in ground:
        assert all(floor(t) == "ground" for t in GRAPH[module]), (module, GRAPH[module])


def test_the_checks_would_catch_a_violation() -> None:
    """The walker sees imports inside functions too (the kind that hid a cycle before)."""
    source = "def f():\n    from steps.engine import task\n"
    tree = ast.parse(source)
    seen = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert seen and _resolve("steps.engine.task") == "steps.engine.task"
    assert floor("steps.engine.task") == "steps" and floor("cli.app") == "edges"
    assert floor("reelflow.settings") == "ground" and floor("workflows.worker.lifecycle") == (
        "workflows"
    )


@pytest.mark.parametrize("limit", [300])
def test_modules_stay_small(limit: int) -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in MODULES.items()}
    assert not {m: n for m, n in sizes.items() if n > limit}
    assert statistics.median(sizes.values()) <= 120, statistics.median(sizes.values())


def test_no_folder_holds_more_than_twelve_modules() -> None:
    crowded = {}
    for package in PACKAGES:
        for folder in [ROOT / package, *(p for p in (ROOT / package).rglob("*") if p.is_dir())]:
            if "versions" in folder.parts or "__pycache__" in folder.parts:
                continue
            modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
            if len(modules) > 12:
                crowded[str(folder.relative_to(ROOT))] = len(modules)
    assert not crowded, crowded


def test_stages_use_only_the_engines_public_face() -> None:
    """A stage imports `steps` (step, StepContext, RetryPolicy, ...), never `steps.engine.*`:
    the engine can change behind that face."""
    stages = [m for m in MODULES if m.startswith("steps.") and not m.startswith("steps.engine")]
    assert "steps.short_video.render" in stages and "steps.probe" in stages
    reaching = {m: sorted(t for t in GRAPH[m] if t.startswith("steps.engine")) for m in stages}
    assert not {m: t for m, t in reaching.items() if t}, reaching
