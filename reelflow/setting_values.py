"""The parsers of settings whose value is more than a string: database URLs, pool and
token lists. Apart from the model so `reelflow.settings` stays the list of settings."""

from __future__ import annotations

import re


def async_database_url(url: str) -> str:
    """Any PostgreSQL URL spelling, turned into the asyncpg dialect SQLAlchemy needs."""
    for prefix in (
        "postgresql+asyncpg://",
        "postgresql+psycopg://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("must be a PostgreSQL URL (postgresql://user@host:port/dbname)")


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+socket://")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def parse_pools(text: str) -> dict[str, int]:
    """`gpu:4,render-farm:2` -> {"gpu": 4, "render-farm": 2}."""
    pools: dict[str, int] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, size = item.partition(":")
        if not sep or not _NAME.match(name.strip()) or not size.strip().isdigit():
            raise ValueError(f"{item!r} is not name:size (a lower-case name, a whole number)")
        if not 1 <= int(size) <= 10_000:
            raise ValueError(f"pool {name}: size {size} is not between 1 and 10000")
        if name.strip() in pools:
            raise ValueError(f"pool {name} is declared twice")
        pools[name.strip()] = int(size)
    return pools


def parse_tokens(text: str) -> dict[str, str]:
    """`alice=tok1,bob=tok2` -> {"tok1": "alice", "tok2": "bob"} (never logged)."""
    tokens: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, token = item.partition("=")
        if not sep or not _NAME.match(name.strip()) or len(token.strip()) < 8:
            raise ValueError("each token is name=token (a lower-case name, 8 characters or more)")
        tokens[token.strip()] = name.strip()
    return tokens


AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")


def parse_step_pools(text: str) -> dict[str, str]:
    """`render_scene=farm,upscale=gpu` -> {"render_scene": "farm", "upscale": "gpu"}."""
    found: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        step, sep, pool = (part.strip() for part in item.partition("="))
        if not sep or not step.isidentifier() or not _NAME.match(pool):
            raise ValueError(f"{item!r} is not step=pool (a step's name, a pool's name)")
        found[step] = pool
    return found
