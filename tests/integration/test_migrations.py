"""Migrations are the only way the schema is made: they reach head, agree with the models,
and round-trip down to base and up again."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from db.base import Base
from db.migrate import ensure_at_head, head_revision
from reelflow.errors import SchemaBehind
from tests.support import ROOT, Services, admin_sql, database_url_for, migrate


@pytest.fixture
def empty_db(services: Services) -> Iterator[str]:
    name = f"rf_mig_{uuid.uuid4().hex[:8]}"
    admin_sql(services.admin_url, f'CREATE DATABASE "{name}"')
    yield database_url_for(services.admin_url, name)
    admin_sql(services.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _inspect(url: str) -> tuple[set[str], list[object], str | None]:
    async def go() -> tuple[set[str], list[object], str | None]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
                diff = await conn.run_sync(
                    lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
                )
                version = None
                if "alembic_version" in tables:
                    version = (
                        await conn.execute(text("SELECT version_num FROM alembic_version"))
                    ).scalar()
                return tables, diff, version
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _alembic(url: str, *args: str) -> None:
    code = f"from db import migrate; migrate.{args[0]}({url!r}, {args[1]!r})"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_single_head() -> None:
    assert head_revision()


def test_upgrade_matches_models_and_round_trips(empty_db: str) -> None:
    migrate(empty_db)
    tables, diff, version = _inspect(empty_db)
    assert {"workflow_runs", "step_runs", "step_attempts", "run_events"} <= tables
    assert diff == [], diff
    assert version == head_revision()

    _alembic(empty_db, "downgrade", "base")
    tables, _, version = _inspect(empty_db)
    assert tables <= {"alembic_version"} and version is None

    _alembic(empty_db, "upgrade", "head")
    tables, diff, version = _inspect(empty_db)
    assert diff == [] and version == head_revision()


def test_schema_behind_is_refused(empty_db: str) -> None:
    async def go() -> None:
        engine = create_async_engine(empty_db)
        try:
            with pytest.raises(SchemaBehind, match="reelflow db upgrade"):
                await ensure_at_head(engine)
        finally:
            await engine.dispose()

    asyncio.run(go())
