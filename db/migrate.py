"""Schema migrations, run programmatically, and the check that refuses a database behind head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reelflow.errors import SchemaBehind
from reelflow.settings import async_database_url, get_settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("postgresql+asyncpg://unused/"))
    heads = script.get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"migrations must have a single head, found {heads}")
    return heads[0]


def migration_url() -> str:
    """Where migrations run: DATABASE_DIRECT_URL, past the pooler, else DATABASE_URL."""
    settings = get_settings()
    return settings.database_direct_url or settings.require_database_url()


def through_pooler(url: str) -> bool:
    """Whether `url` is DATABASE_URL behind a transaction-mode pooler (a migration run
    there is one transaction, which the pooler keeps on one server connection)."""
    settings = get_settings()
    return settings.database_pooler == "transaction" and async_database_url(url) == (
        settings.database_url
    )


def upgrade(url: str, revision: str = "head") -> None:
    """Not callable from a running event loop: Alembic's env runs its own."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        exists = (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar()
        if exists is None:
            return None
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def ensure_at_head(engine: AsyncEngine) -> None:
    """Raise SchemaBehind unless the database is at the head revision."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise SchemaBehind(
            f"database schema is at {current or 'nothing'}, code needs {head}: "
            "run `reelflow db upgrade`"
        )
