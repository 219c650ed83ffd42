"""Input keys: what a step's result depends on, as one sha256, Bazel- and Nix-style.

A step execution's key covers everything that can change its result, and nothing else:
- its name and its code version: the sources of its module and of the modules of its own
  package it imports (a deploy that changes them never reuses an older result), plus an
  explicit `@step(version=...)` for anything else (a data file, an external tool);
- the params fields it reads: those of its params model, not the whole run's params (so
  patching `publish`'s settings does not re-render);
- its map item, for a map's items;
- the recorded outputs of the steps it reads, each by its digest: a canonical JSON of
  the output in which every artifact stands for its sha256 and size, never its path.

Each part is a digest on its own, recorded where it is produced (an output's digest on its
step row, an item's on the item's row, the params' per step on the run), so the same key
is computed here (for plans and dispatch) and inside the claim's SQL (`db.claims`), from
the same strings (`db.keys` defines them), and a test holds the two to it.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from db.keys import KEY_FORMAT, input_key, mapped_digest, sha256_text

__all__ = ["KEY_FORMAT", "input_key", "mapped_digest", "sha256_text"]


def is_artifact(value: Mapping[str, Any]) -> bool:
    return "sha256" in value and "size" in value and "path" in value


def canonical(value: Any) -> Any:
    """The value as keys see it: artifacts by content (sha256 and size), not location."""
    if isinstance(value, Mapping):
        if is_artifact(value):
            return {"sha256": value["sha256"], "size": value["size"]}
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of a value (an output, an item, params)."""
    text = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256_text(text)


#: Keys the artifact store holds for runs: `<run_id>/<step_key>/...` (published files live
#: in the publish store, and are never pruned).
_RUN_KEY = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/")


def artifact_keys(value: Any) -> list[str]:
    """The artifact-store keys of runs an output references (for reference counting)."""
    found: list[str] = []
    if isinstance(value, Mapping):
        key = value.get("key")
        if is_artifact(value) and isinstance(key, str):
            if _RUN_KEY.match(key):
                found.append(key)
        else:
            for v in value.values():
                found.extend(artifact_keys(v))
    elif isinstance(value, (list, tuple)):
        for v in value:
            found.extend(artifact_keys(v))
    return found


def key_parts(
    *, code_version: str, params_digest: str, item_digest: str | None, inputs: Mapping[str, str]
) -> dict[str, Any]:
    """The parts of a key, recorded beside it, so a miss can say which part changed."""
    return {"code": code_version, "params": params_digest, "item": item_digest or "",
            "inputs": dict(sorted(inputs.items()))}  # fmt: skip


def changed_parts(before: Mapping[str, Any] | None, now: Mapping[str, Any]) -> list[str]:
    """Which parts of a key differ, in words: `code`, `params`, `item`, `input <step>`."""
    if not before:
        return ["no earlier result"]
    changed = [part for part in ("code", "params", "item") if before.get(part) != now.get(part)]
    old, new = before.get("inputs") or {}, now.get("inputs") or {}
    names = sorted(set(old) | set(new))
    changed += [f"input {name}" for name in names if old.get(name) != new.get(name)]
    return changed


def code_version(fn: Any, explicit: str | None = None) -> str:
    """The sources of the step's module and of the modules of its own package it imports
    (transitively), and `explicit`: a change to any of them is another version."""
    module = sys.modules.get(fn.__module__)
    sources = [f"version={explicit or ''}"]
    if module is not None:
        for name, text in sorted(_package_sources(module).items()):
            sources.append(f"{name}\n{text}")
    return sha256_text("\n\x00\n".join(sources))[:32]


def _package_sources(module: ModuleType) -> dict[str, str]:
    """module name -> source, for `module` and the modules of its package it imports."""
    package = module.__name__.rsplit(".", 1)[0] if "." in module.__name__ else module.__name__
    seen: dict[str, str] = {}
    todo = [module.__name__]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        found = sys.modules.get(name)
        if found is None:
            continue
        try:
            text = inspect.getsource(found)
        except (OSError, TypeError):
            continue
        seen[name] = text
        for imported in _imports(text):
            if imported == package or imported.startswith(package + "."):
                todo.append(imported)
    return seen


def _imports(text: str) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
    return names
