"""Alembic environment, async: migrations run over asyncpg like everything else, on a
connection made as every other is (`db.engine.connect`: TLS, the pooler's rules), without
the statement and lock timeouts (a migration may rewrite a large table)."""

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from db import models  # noqa: F401  (registers the tables on the metadata)
from db.base import Base
from db.engine import create_engine
from db.migrate import through_pooler

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from reelflow.settings import get_settings

        url = get_settings().require_database_url()
    return url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    url = _url()
    engine = create_engine(url, behind_pooler=through_pooler(url), timed=False, pool=False)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
