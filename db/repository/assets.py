"""Uploaded assets: one row per content (sha256), the runs that name them, and pruning the
ones no kept run names.

An asset's bytes live at a key derived from its sha256 alone, so an upload and the
deletion of a pruned asset's file could meet at the same key; both hold `lock_content`
while they decide and act, so a file is never deleted under a row that needs it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

import asyncpg
from sqlalchemy import delete, func, insert, literal_column, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from db.records import AssetRecord
from db.repository.tables import asset_refs, assets, deletions
from reelflow.errors import AssetNotFound

#: Where assets live in the artifact store: beside the runs' `<run_id>/` folders.
ASSET_PREFIX = "assets/"


def asset_key(sha256: str, extension: str) -> str:
    """`assets/<sha256>/asset.<ext>`: named by the bytes alone, so equal bytes share a key."""
    return f"{ASSET_PREFIX}{sha256}/asset.{extension}"


def content_prefix(sha256: str) -> str:
    """The folder of one content's file (what a pruned asset's deletion removes)."""
    return f"{ASSET_PREFIX}{sha256}/"


def content_of(prefix: str) -> str | None:
    """The sha256 a deletion's prefix names, or None when it is no asset's folder."""
    if not prefix.startswith(ASSET_PREFIX):
        return None
    return prefix.removeprefix(ASSET_PREFIX).strip("/") or None


async def lock_content(conn: AsyncConnection, *, sha256: str) -> None:
    """Hold the lock of one content until the caller's transaction ends."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
        {"name": f"reelflow-asset:{sha256}"},
    )


def _record(row: object) -> AssetRecord:
    return AssetRecord.model_validate(row)


async def find_by_sha(
    conn: AsyncConnection, *, sha256: str, hold: bool = False
) -> AssetRecord | None:
    """The asset of these bytes; with `hold`, its row is held (FOR KEY SHARE) until the
    caller's transaction ends, after waiting for a prune deleting it (then: None)."""
    stmt = select(assets).where(assets.c.sha256 == sha256)
    if hold:
        stmt = stmt.with_for_update(key_share=True)
    row = (await conn.execute(stmt)).one_or_none()
    return _record(row) if row else None


async def add_asset(conn: AsyncConnection, *, asset: AssetRecord) -> tuple[AssetRecord, bool]:
    """Insert the asset; (the row of these bytes, False) when another upload has them."""
    values = asset.model_dump(exclude={"created_at"})
    stmt = pg_insert(assets).values(**values)
    upsert = stmt.on_conflict_do_update(
        index_elements=["sha256"], set_={"sha256": stmt.excluded.sha256}
    ).returning(*assets.c, literal_column("xmax = 0").label("created"))
    row = (await conn.execute(upsert)).one()
    return _record(row), bool(row.created)


async def require_asset(conn: AsyncConnection, *, asset_id: uuid.UUID) -> AssetRecord:
    row = (await conn.execute(select(assets).where(assets.c.id == asset_id))).one_or_none()
    if row is None:
        raise AssetNotFound(f"no asset {asset_id}")
    return _record(row)


async def list_assets(
    conn: AsyncConnection, *, limit: int, kind: str | None = None
) -> list[AssetRecord]:
    """Newest first."""
    stmt = select(assets).order_by(assets.c.created_at.desc(), assets.c.id).limit(limit)
    if kind is not None:
        stmt = stmt.where(assets.c.kind == kind)
    return [_record(r) for r in await conn.execute(stmt)]


async def kinds_of(
    conn: AsyncConnection, *, asset_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The kind of each of these assets that exists, each row held (FOR KEY SHARE) until
    the caller's transaction ends: a prune cannot delete it before the run's refs commit."""
    ids = sorted(set(asset_ids))
    if not ids:
        return {}
    stmt = select(assets.c.id, assets.c.kind).where(assets.c.id.in_(ids))
    rows = await conn.execute(stmt.with_for_update(key_share=True))
    return {row.id: row.kind for row in rows}


async def add_asset_refs(
    conn: AsyncConnection, *, run_id: uuid.UUID, asset_ids: Iterable[uuid.UUID]
) -> None:
    """The run names these assets (refs are only added: outputs made from an asset a
    revision dropped may still be reused)."""
    rows = [{"asset_id": a, "run_id": run_id} for a in sorted(set(asset_ids))]
    if rows:
        await conn.execute(pg_insert(asset_refs).values(rows).on_conflict_do_nothing())


_UNUSED = ~select(asset_refs.c.asset_id).where(asset_refs.c.asset_id == assets.c.id).exists()


async def count_unused(
    conn: AsyncConnection, *, before: datetime, ignoring: Sequence[uuid.UUID] = ()
) -> int:
    """Assets made before `before` that no run names but those `ignoring` (the runs a
    prune deletes first): what it would delete."""
    named = select(asset_refs.c.asset_id).where(asset_refs.c.asset_id == assets.c.id)
    if ignoring:
        named = named.where(asset_refs.c.run_id.not_in(list(ignoring)))
    stmt = select(func.count()).where(assets.c.created_at < before, ~named.exists())
    return int((await conn.execute(stmt)).scalar_one())


async def prune_assets(
    conn: AsyncConnection, *, before: datetime, limit: int = 1000
) -> list[tuple[AssetRecord, int]]:
    """Delete assets made before `before` that no run names, and record their files for
    deletion (with the rows, as prune does for runs): (asset, its deletion id) each.

    Rows a starting run holds are skipped; the refs check runs again after the lock, in a
    statement of its own, so a ref committed before the lock is seen."""
    locked = select(assets.c.id).where(assets.c.created_at < before, _UNUSED)
    locked = locked.order_by(assets.c.created_at).limit(limit)
    ids = list((await conn.execute(locked.with_for_update(skip_locked=True))).scalars())
    if not ids:
        return []
    gone = await conn.execute(
        delete(assets).where(assets.c.id.in_(ids), _UNUSED).returning(*assets.c)
    )
    out = []
    for row in gone.all():
        record = _record(row)
        deletion = insert(deletions).values(prefix=content_prefix(record.sha256), keep=[], keys=[])
        deletion_id = (await conn.execute(deletion.returning(deletions.c.id))).scalar_one()
        out.append((record, int(deletion_id)))
    return out


_ASSET_FILE = "SELECT key, size, sha256 FROM assets WHERE id = $1"


async def asset_file(conn: asyncpg.Connection, *, asset_id: uuid.UUID) -> dict[str, object] | None:
    """Where a step finds an asset's bytes (key, size, sha256); None when it is gone."""
    row = await conn.fetchrow(_ASSET_FILE, asset_id)
    return dict(row) if row else None
