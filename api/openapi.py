"""The OpenAPI document: what this deployment answers, and a run body typed per workflow.

`POST /runs` parses a generic body (workflow name, params object) so that an unknown
workflow or bad params get reelflow's own answers (`unknown_workflow`, `invalid_params`
naming each field). The document describes the same rule precisely: `RunCreate` is a union
discriminated by `workflow`, one variant per registered workflow with that workflow's
params model, so a generated client types its params and a fuzzer builds runs that start.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from api.auth import Access
from workflows.definition.registry import all_workflows

REF = "#/components/schemas/{model}"


def document(app: FastAPI, *, access: Access, faults: bool) -> Callable[[], dict[str, Any]]:
    """The schema says what this deployment answers: bearer security and 401s on exactly
    the operations that need a token (`api.auth`), and `faults` (a testing aid) only where
    ALLOW_FAULT_INJECTION accepts it."""

    def schema() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes,
                              description=app.description)  # fmt: skip
            access.document(doc)
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            if not faults:
                schemas.get("RunCreate", {}).get("properties", {}).pop("faults", None)
            _headers_are_strings(doc)
            _runs_per_workflow(schemas)
            app.openapi_schema = doc
        return app.openapi_schema

    return schema


def _headers_are_strings(doc: dict[str, Any]) -> None:
    """An optional header is absent, never `null`: HTTP has no null header."""
    for path in doc["paths"].values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "header":
                    continue
                options = parameter.get("schema", {}).get("anyOf")
                if options and any(o.get("type") == "null" for o in options):
                    kept = [o for o in options if o.get("type") != "null"]
                    rest = {k: v for k, v in parameter["schema"].items() if k != "anyOf"}
                    parameter["schema"] = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}),
                                           **rest}  # fmt: skip
                    parameter["schema"].pop("default", None)


def _runs_per_workflow(schemas: dict[str, Any]) -> None:
    generic = schemas.get("RunCreate")
    if generic is None:
        return
    mapping: dict[str, str] = {}
    for name, workflow in sorted(all_workflows().items()):
        params_ref = _add_model(schemas, workflow.params_model)
        variant = copy.deepcopy(generic)
        variant["title"] = f"{_camel(name)}RunCreate"
        variant["description"] = workflow.description or f"A run of {name}."
        props = variant.setdefault("properties", {})
        props["workflow"] = {"type": "string", "const": name, "title": "Workflow"}
        props["params"] = {"$ref": params_ref}
        required = set(variant.get("required", [])) | {"workflow"}
        if any(field.is_required() for field in workflow.params_model.model_fields.values()):
            required.add("params")
        variant["required"] = sorted(required)
        variant.pop("examples", None)
        variant["examples"] = [{"workflow": name, "params": _example(workflow.params_model)}]
        schemas[variant["title"]] = variant
        mapping[name] = REF.format(model=variant["title"])
    schemas["RunCreate"] = {
        "title": "RunCreate",
        "description": "A run to start: `workflow` chooses the shape of `params`.",
        "oneOf": [{"$ref": ref} for ref in mapping.values()],
        "discriminator": {"propertyName": "workflow", "mapping": mapping},
    }


def _add_model(schemas: dict[str, Any], model: type[BaseModel]) -> str:
    found = model.model_json_schema(ref_template=REF, mode="validation")
    for name, sub in found.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    name = model.__name__
    if name in schemas and schemas[name] != found:  # two workflows' models share a name
        name = f"{model.__module__.replace('.', '_')}_{name}"
    schemas[name] = found
    return REF.format(model=name)


def _example(model: type[BaseModel]) -> dict[str, Any]:
    """The params model's first example when it has one; otherwise its defaults ({})."""
    examples = model.model_json_schema().get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], dict):
        return dict(examples[0])
    return {}


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.replace("-", "_").split("_"))
