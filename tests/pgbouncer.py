"""A real PgBouncer in transaction mode in front of the test PostgreSQL: the pooler the
tests started, with a config of its own in a temporary folder (Debian's `pgbouncer`
package; `scripts/test` installs it where it can)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from cli.embedded import free_port
from cli.processes import stop_groups

BINARY = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)


def require_pgbouncer() -> str:
    if BINARY is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; scripts/test does)")
    return BINARY


class PgBouncer:
    """`pgbouncer` in the foreground, `pool_mode = transaction`, in front of the server of
    `server_url` (TCP or a Unix socket folder), every database by its own name. A few
    server connections per database, so that transactions of different clients share
    them, as they do in production."""

    def __init__(self, base: Path, server_url: str, *, pool_size: int = 4) -> None:
        self.base = base
        self.port = free_port()
        self.server = make_url(server_url)
        self.pool_size = pool_size
        self.log = base / "pgbouncer.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> Path:
        self.base.mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)  # read by the unprivileged user it runs as under root
        host = self.server.query.get("host") or self.server.host or "127.0.0.1"
        target = f"host={host} port={self.server.port or 5432}"
        user = self.server.username or "postgres"
        users = self.base / "users.txt"
        users.write_text(f'"{user}" "{self.server.password or ""}"\n')
        config = self.base / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = {target}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 1000\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits\n"
            f"admin_users = {user}\n"
            + ("user = nobody\n" if os.geteuid() == 0 else "")  # it refuses to run as root
        )
        for path in (users, config):
            path.chmod(0o644)
        return config

    def url(self, database: str) -> str:
        """A URL of `database` through the pooler."""
        user = self.server.username or "postgres"
        return f"postgresql+asyncpg://{user}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 20) -> None:
        config = self._config()
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [require_pgbouncer(), str(config)],
                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited:\n{self.tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not listen in {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_groups([self.proc], 10)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""
