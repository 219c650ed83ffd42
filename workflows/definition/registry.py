"""Workflows by name: the shipped ones, and those of the modules named by WORKFLOW_MODULES
(a deployment's own), imported the first time a name is looked up."""

from __future__ import annotations

import importlib

from reelflow.errors import ConfigError, UnknownWorkflow
from reelflow.settings import get_settings
from workflows.definition.shipped import probe_workflow, short_video_workflow
from workflows.definition.workflow import Workflow

WORKFLOWS: dict[str, Workflow] = {}
_loaded: set[str] = set()


def register(workflow: Workflow) -> Workflow:
    WORKFLOWS[workflow.name] = workflow
    return workflow


def extra_modules() -> list[str]:
    """The modules WORKFLOW_MODULES names (the workers import them for their steps too)."""
    return [m.strip() for m in get_settings().workflow_modules.split(",") if m.strip()]


def load_configured() -> None:
    """Import the modules of WORKFLOW_MODULES not imported yet: each registers its own."""
    for module in extra_modules():
        if module in _loaded:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"WORKFLOW_MODULES: cannot import {module!r}: {exc}") from None
        _loaded.add(module)


def get_workflow(name: str) -> Workflow:
    if name not in WORKFLOWS:
        load_configured()
    try:
        return WORKFLOWS[name]
    except KeyError:
        known = ", ".join(sorted(WORKFLOWS)) or "none"
        raise UnknownWorkflow(f"unknown workflow {name!r} (known: {known})") from None


def all_workflows() -> dict[str, Workflow]:
    """Every workflow this deployment runs, by name."""
    load_configured()
    return WORKFLOWS


register(probe_workflow)
register(short_video_workflow)
