"""Which params of a workflow name uploaded assets, and the kind each takes.

A params model declares `asset_fields`: a mapping of field to kind, or a tuple of field
names whose kinds follow their names (`images` take images, `music` takes audio). A field
may hold one id, none, or a list of them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast

from pydantic import BaseModel

from db.records import AssetKind

#: The kind a field takes, by its name, when `asset_fields` lists names only.
KIND_BY_NAME: dict[str, AssetKind] = {
    "image": "image", "images": "image", "background": "image", "backgrounds": "image",
    "music": "audio", "audio": "audio", "soundtrack": "audio",
}  # fmt: skip


def asset_fields(model: type[BaseModel]) -> dict[str, AssetKind | None]:
    """Field -> the kind it takes (None: any kind) for the params model `model`."""
    declared: Any = getattr(model, "asset_fields", ())
    if isinstance(declared, Mapping):
        return {str(name): cast(AssetKind | None, kind) for name, kind in declared.items()}
    return {str(name): KIND_BY_NAME.get(str(name)) for name in declared}


def named_assets(params: BaseModel) -> dict[str, list[uuid.UUID]]:
    """Field -> the asset ids it names, in the order given."""
    out: dict[str, list[uuid.UUID]] = {}
    for name in asset_fields(type(params)):
        value = getattr(params, name, None)
        items = value if isinstance(value, list | tuple) else [] if value is None else [value]
        out[name] = [uuid.UUID(str(item)) for item in items]
    return out
