"""The pooled tier: the engine's essentials again, with every process reaching PostgreSQL
through a real PgBouncer in transaction mode (DATABASE_POOLER=transaction), and
migrations past it (DATABASE_DIRECT_URL). Skipped, with the reason, without pgbouncer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.pgbouncer import PgBouncer, require_pgbouncer
from tests.support import Services, patched_environment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def pgbouncer(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgBouncer]:
    require_pgbouncer()
    # Four server connections per database for every client of a module (the test, the
    # API, the workers' processes): transactions of different clients share them.
    bouncer = PgBouncer(tmp_path_factory.mktemp("pgbouncer"), services.admin_url, pool_size=4)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="module")
def env(env: dict[str, str], pgbouncer: PgBouncer) -> Iterator[dict[str, str]]:
    """The module's database (the root fixture's), reached through the pooler."""
    direct = env["DATABASE_URL"]
    database = make_url(direct).database
    assert database
    pooled = {
        **env,
        "DATABASE_URL": pgbouncer.url(database),
        "DATABASE_DIRECT_URL": direct,
        "DATABASE_POOLER": "transaction",
    }
    with patched_environment(pooled):
        yield pooled


def no_prepared_statement_errors(*logs: str) -> None:
    """The failure a session-bound statement cache meets behind the pooler, nowhere."""
    for text in logs:
        assert "prepared statement" not in text, text[text.find("prepared statement") - 2000 :]
