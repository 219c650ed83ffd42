"""Workflows by name. Importing this module registers the shipped ones."""

from __future__ import annotations

from reelflow.errors import UnknownWorkflow
from workflows.shipped import probe_workflow, short_video_workflow
from workflows.workflow import Workflow

WORKFLOWS: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    WORKFLOWS[workflow.name] = workflow
    return workflow


def get_workflow(name: str) -> Workflow:
    try:
        return WORKFLOWS[name]
    except KeyError:
        known = ", ".join(sorted(WORKFLOWS)) or "none"
        raise UnknownWorkflow(f"unknown workflow {name!r} (known: {known})") from None


register(probe_workflow)
register(short_video_workflow)
