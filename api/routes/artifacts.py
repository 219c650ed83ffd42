"""A run's artifacts over HTTP, from the local folder or object storage, with byte ranges
either way (a `<video>` seeks with them)."""

from __future__ import annotations

import asyncio
import mimetypes
import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from api.deps import Conn
from api.problems import documented
from db import repository as repo
from reelflow.errors import ArtifactNotFound
from reelflow.storage import ArtifactMissing, LocalStore, artifact_store

router = APIRouter(prefix="/runs", tags=["runs"], responses=documented(422, 500, 503))

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range a `Range` header asks for, as (start, end exclusive) within `size`;
    None when the whole file should be sent (no header, or one this does not parse: RFC
    9110 lets a server ignore it). ValueError when the range lies outside the file."""
    found = _RANGE.fullmatch((header or "").strip())
    if not found or found.groups() == ("", ""):
        return None
    first, last = found.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size
    else:
        start = int(first)
        end = size if last == "" else min(size, int(last) + 1)
    if start >= size or start >= end:
        raise ValueError(f"bytes {header!r} of {size}")
    return start, end


@router.get(
    "/{run_id}/artifacts/{path:path}",
    response_class=FileResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
        206: {"content": {"application/octet-stream": {}}, "description": "the range asked"},
        416: {"description": "the range asked lies outside the file"},
        **documented(404),
    },
)
async def get_artifact(
    run_id: uuid.UUID,
    path: Annotated[str, Path(max_length=500, pattern=r"^[^\x00]+$")],
    conn: Conn,
    request: Request,
) -> Response:
    """A file a step of the run wrote, e.g. `compose_video/video.mp4`, from the local
    folder or streamed from object storage; `Range: bytes=...` answers 206. Read-only;
    paths that leave the run's folder are refused."""
    await repo.require_run(conn, run_id=run_id)
    missing = ArtifactNotFound(f"run {run_id} has no artifact {path!r}")
    parts = path.split("/")
    if any(p in ("", ".", "..") or p.startswith(".tmp-") for p in parts):
        raise missing  # out of the run's folder, or a file still being written
    store, key = artifact_store(), f"{run_id}/{path}"
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if isinstance(store, LocalStore):  # a file: Starlette answers ranges itself
        try:
            target = store.local_copy(key, store.root)
        except ArtifactMissing:
            raise missing from None
        if not target.is_relative_to(store.root / str(run_id)):  # a link out of the run
            raise missing
        return FileResponse(target, media_type=media_type)
    wanted = request.headers.get("range")
    span: tuple[int, int] | None = None
    if wanted:
        size = await asyncio.to_thread(store.size, key)
        if size is None:
            raise missing
        try:
            span = byte_range(wanted, size)
        except ValueError:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    try:
        opened = await store.open_stream(key, span)
    except ArtifactMissing:
        raise missing from None
    headers = {"Content-Length": str(opened.end - opened.start), "Accept-Ranges": "bytes"}
    if span is None:
        return StreamingResponse(opened.chunks, media_type=media_type, headers=headers)
    headers["Content-Range"] = f"bytes {opened.start}-{opened.end - 1}/{opened.size}"
    return StreamingResponse(opened.chunks, status_code=206, media_type=media_type, headers=headers)
