"""What a run is, in one line of the runs list: where a workflow's runs find their title and
thumbnail. Declared per workflow as paths into its params or its steps' recorded outputs,
so the list reads a few fields of a few rows per page and knows nothing of any workflow."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: A path's first part naming the run's params rather than a step.
PARAMS = "params"


def _at(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


@dataclass(frozen=True)
class Headline:
    """`title`: dotted paths tried in order, the first that holds text wins
    (`write_script.title`, `params.topic`); `thumbnail`: the path of an image artifact a
    step records (`compose_video.thumbnail`). Only steps that are not map items."""

    title: tuple[str, ...] = ()
    thumbnail: str | None = None

    def step_fields(self) -> list[tuple[str, tuple[str, ...]]]:
        """(step, path within its output) of every field read from a step's output."""
        paths = [*self.title, *([self.thumbnail] if self.thumbnail else [])]
        split = [tuple(p.split(".")) for p in paths]
        return [(p[0], p[1:]) for p in split if p[0] != PARAMS]

    def read(
        self, params: Mapping[str, Any], outputs: Mapping[tuple[str, tuple[str, ...]], Any]
    ) -> tuple[str | None, str | None]:
        """(title, the thumbnail's artifact key) from the run's params and the values
        `step_fields` found (absent: that step has no output yet)."""
        title = None
        for path in self.title:
            first, *rest = path.split(".")
            found = (
                _at(params, tuple(rest)) if first == PARAMS else outputs.get((first, tuple(rest)))
            )
            if isinstance(found, str) and found.strip():
                title = found.strip()
                break
        thumbnail = None
        if self.thumbnail:
            first, *rest = self.thumbnail.split(".")
            artifact = outputs.get((first, tuple(rest)))
            key = artifact.get("key") if isinstance(artifact, Mapping) else None
            thumbnail = key if isinstance(key, str) else None
        return title, thumbnail
