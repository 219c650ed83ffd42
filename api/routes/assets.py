"""/assets: a user's own media (images, audio), uploaded once and named by id in a run's
params. The type is read from the bytes; equal bytes are stored once."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from api.deps import Actor, Conn
from api.problems import GUARDED, documented
from api.schemas import AssetOut
from api.uploads import BODY, receive
from db import repository as repo
from reelflow.settings import get_settings
from workflows.assets import intake

router = APIRouter(prefix="/assets", tags=["assets"], responses=documented(422, 500, 503))


@router.post(
    "",
    status_code=201,
    response_model=AssetOut,
    responses={
        200: {"model": AssetOut, "description": "these bytes were uploaded before: that asset"},
        **documented(400, 413),
        **GUARDED,
    },
    openapi_extra=BODY,
)
async def upload_asset(request: Request, response: Response, actor: Actor) -> AssetOut:
    """Upload an image or an audio file as multipart/form-data (`file`): 201 with the new
    asset, 200 with the existing one when the same bytes were uploaded before. 415 when
    its bytes are no image or audio reelflow takes (whatever its name says), 413 over
    ASSET_MAX_BYTES; nothing is kept of a refused upload. A browser page sends it with
    `X-Requested-With`; a script may send `Authorization` instead."""
    upload = await receive(request, limit=get_settings().asset_max_bytes)
    try:
        asset, created = await intake.admit(upload)
    finally:
        upload.path.unlink(missing_ok=True)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/assets/{asset.id}"
    return AssetOut.of(asset)


@router.get("", response_model=list[AssetOut])
async def list_assets(
    conn: Conn,
    kind: Literal["image", "audio"] | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[AssetOut]:
    """The newest uploads first."""
    return [AssetOut.of(a) for a in await repo.list_assets(conn, limit=limit, kind=kind)]


@router.get("/{asset_id}", response_model=AssetOut, responses=documented(404))
async def get_asset(asset_id: uuid.UUID, conn: Conn) -> AssetOut:
    return AssetOut.of(await repo.require_asset(conn, asset_id=asset_id))
