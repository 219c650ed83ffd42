"""Print the configuration table (for the README) or .env.example, from the settings model.

    python scripts/settings_doc.py table     # markdown table
    python scripts/settings_doc.py env       # .env.example

tests/unit/test_deploy_files.py fails when README.md or .env.example disagree with this.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reelflow.database_settings import DatabaseSettings
from reelflow.media_settings import MediaSettings
from reelflow.settings import Settings

#: Read by compose.yaml and docker/entrypoint.sh, not by reelflow itself.
DEPLOYMENT = {
    "POSTGRES_USER": ("reelflow", "PostgreSQL user compose creates"),
    "POSTGRES_PASSWORD": ("reelflow", "PostgreSQL password compose sets: change it"),
    "POSTGRES_DB": ("reelflow", "PostgreSQL database compose creates"),
    "POSTGRES_ADDRESS": (
        "postgres:5432",
        "where the app reaches PostgreSQL: pgbouncer:5432"
        " with `--profile pgbouncer` (and DATABASE_POOLER=transaction)",
    ),
    "PGBOUNCER_POOL_SIZE": ("20", "server connections per database (`--profile pgbouncer`)"),
    "PGBOUNCER_MAX_CLIENT_CONN": ("2000", "client connections PgBouncer accepts"),
    "WORKER_QUEUES": ("default", "queues of the `worker` service"),
    "WORKER_CONCURRENCY": ("", "processes per `worker` container (default: CPUs)"),
    "GPU_WORKER_CONCURRENCY": ("1", "processes of the `gpu-worker` container"),
    "FLOWER_PORT": ("5555", "host port of Flower (`--profile flower`)"),
    "FLOWER_BIND": ("127.0.0.1", "host address Flower's port is published on"),
    "FLOWER_BASIC_AUTH": ("", "Flower's pages and REST API: user:password (basic auth)"),
    "FLOWER_UNAUTHENTICATED_API": ("false", "true: Flower's REST API without auth (local use)"),
    "RABBITMQ_USER": ("reelflow", "RabbitMQ user (`--profile rabbitmq`)"),
    "RABBITMQ_PASSWORD": ("reelflow", "RabbitMQ password (`--profile rabbitmq`): change it"),
}


def _default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Path):
        return str(value)
    return str(value)


def rows() -> list[tuple[str, str, str]]:
    out = []
    fields = Settings.model_fields.items()  # the service's, the database's, then the video's

    def place(item: tuple[str, Any]) -> int:
        if item[0] in MediaSettings.model_fields:
            return 2
        return 1 if item[0] in DatabaseSettings.model_fields else 0

    for name, field in sorted(fields, key=place):
        out.append((name.upper(), _default(field.default), field.description or ""))
    return out


def table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, default, meaning in rows():
        lines.append(
            f"| `{name}` | `{default}` | {meaning} |" if default else f"| `{name}` | | {meaning} |"
        )
    return "\n".join(lines)


def env_example() -> str:
    out = ["# reelflow settings: every variable, with its default (commented out).", ""]
    for name, default, meaning in rows():
        out += [f"# {meaning}" if meaning else f"# {name}", f"# {name}={default}", ""]
    out += ["# Deployment (compose.yaml and the image's entrypoint)", ""]
    for name, (default, meaning) in DEPLOYMENT.items():
        out += [f"# {meaning}", f"# {name}={default}", ""]
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "table"
    if what not in ("table", "env"):
        sys.exit("usage: settings_doc.py table|env")
    sys.stdout.write(table() + "\n" if what == "table" else env_example())
