"""TLS to PostgreSQL: `DATABASE_URL` with `sslmode=verify-full` (and the CA in
DATABASE_SSL_ROOT_CERT, or `sslrootcert` in the URL) works for migrations, the workers and
the API, against a throwaway PostgreSQL (pgserver's binaries) started with `ssl = on`, a
certificate signed by a CA made here, and an hba that refuses any connection without TLS:
whatever works below went over TLS, verified against that CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import text

from cli.embedded import free_port
from db.engine import create_engine, driver_session
from db.errors import is_unavailable
from db.states import RunStatus
from tests.support import (
    ApiProcess,
    Services,
    WorkerProcess,
    migrate,
    patched_environment,
    reload_celery_app,
    wait_run,
)
from workflows.runs.operations import start_run

pytestmark = pytest.mark.slow


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_ca(folder: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed certificate authority: its certificate file, key and certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = folder / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(
    folder: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate
) -> tuple[Path, Path]:
    """The server's certificate, for 127.0.0.1 and localhost, signed by the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    crt, pem = folder / "server.crt", folder / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, pem)
    return crt, pem


def ssl_capable_bindir() -> Path | None:
    """PostgreSQL binaries built with OpenSSL: the system's (pg_config, Debian's
    /usr/lib/postgresql/*/bin). pgserver's are built without."""
    candidates: list[Path] = []
    if found := shutil.which("pg_config"):
        done = subprocess.run([found, "--bindir"], capture_output=True, text=True)
        candidates.append(Path(done.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for bindir in candidates:
        config = bindir / "pg_config"
        if not (bindir / "postgres").exists() or not config.exists():
            continue
        configure = subprocess.run([config, "--configure"], capture_output=True, text=True)
        if "openssl" in configure.stdout:
            return bindir
    return None


class TlsPostgres:
    """A PostgreSQL of its own on TCP with `ssl = on` (pgserver's listens on a Unix socket
    only, where there is no TLS, and is built without SSL)."""

    def __init__(self, base: Path, bindir: Path) -> None:
        self.data = base / "data"
        self.bindir = bindir
        self.port = free_port()
        # PostgreSQL refuses to run as root: as pgserver does, run it as its own user.
        self.user = "pgserver" if os.geteuid() == 0 else None

    def _as_server(self, path: Path, mode: int) -> None:
        path.chmod(mode)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [str(self.bindir / program), "-D", str(self.data), *args],
            user=self.user, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        log = self.data / "log"
        assert done.returncode == 0, (done.stderr, log.read_text() if log.exists() else "")

    def start(self, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> None:
        self.data.mkdir(parents=True)
        if self.user is not None:
            try:
                pwd.getpwnam(self.user)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/false", self.user], check=True)
            for folder in self.data.parents:  # that user must reach the data folder
                folder.chmod(folder.stat().st_mode | 0o011)
        self._as_server(self.data, 0o700)
        self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres")
        for path in make_server_cert(self.data, ca_key, ca):
            self._as_server(path, 0o600)
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "hostssl all all 127.0.0.1/32 trust\n"
            "hostnossl all all 0.0.0.0/0 reject\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                "unix_socket_directories = ''\nssl = on\n"
                "ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
            )
        self._run("pg_ctl", "-w", "-l", str(self.data / "log"), "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-m", "immediate", "stop")

    def url(self, database: str = "postgres", query: str = "") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}" + (
            f"?{query}" if query else ""
        )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TlsPostgres, Path]]:
    bindir = ssl_capable_bindir()
    if bindir is None:
        pytest.skip(
            "no PostgreSQL built with SSL here (pgserver's is not): apt-get install postgresql"
        )
    base = tmp_path_factory.mktemp("tls")
    ca_file, ca_key, ca = make_ca(base, "reelflow-test-ca")
    server = TlsPostgres(base, bindir)
    server.start(ca_key, ca)
    try:
        yield server, ca_file
    finally:
        server.stop()


async def _over_tls(url: str) -> bool:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            )
            return bool(found.scalar_one())
    finally:
        await engine.dispose()


async def test_verify_full_against_the_ca(tls: tuple[TlsPostgres, Path], tmp_path: Path) -> None:
    server, ca_file = tls
    full = server.url(query="sslmode=verify-full")
    with patched_environment({"DATABASE_URL": full, "DATABASE_SSL_ROOT_CERT": str(ca_file)}):
        assert await _over_tls(full)  # the engine (API, maintenance)
        async with driver_session() as conn:  # the claim protocol's connection
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        await conn.close()
    # The CA in the URL instead of the setting works the same.
    assert await _over_tls(server.url(query=f"sslmode=verify-full&sslrootcert={ca_file}"))
    # Encrypted but unverified, as `require` means.
    assert await _over_tls(server.url(query="sslmode=require"))

    other, _, _ = make_ca(tmp_path, "someone-else")
    failing = pytest.raises(Exception, match="certificate verify failed")
    with patched_environment({"DATABASE_SSL_ROOT_CERT": str(other)}), failing as refused:
        await _over_tls(full)
    assert not is_unavailable(refused.value)  # a mistake, not an outage to wait out
    with pytest.raises(Exception, match="no encryption"):  # the hba refuses plain text
        await _over_tls(server.url(query="sslmode=disable"))


async def test_migrations_workers_and_the_api_over_tls(
    tls: tuple[TlsPostgres, Path],
    services: Services,
    tmp_path: Path,
) -> None:
    server, ca_file = tls
    database = f"rf_tls_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.url(query="sslmode=require"))
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
    finally:
        await admin.close()
    url = server.url(database, "sslmode=verify-full")
    migrate(f"{url}&sslrootcert={ca_file}")  # `reelflow db upgrade`'s code path
    values = {
        "DATABASE_URL": url,
        "DATABASE_SSL_ROOT_CERT": str(ca_file),
        "REDIS_URL": services.redis_url,
        "ARTIFACT_ROOT": str(tmp_path / "artifacts"),
        "PUBLISH_DIR": str(tmp_path / "published"),
        "LOG_FORMAT": "json",
        "WORKFLOW_MODULES": "tests.workflows",
        "RATE_LIMIT": "",
    }
    services.flush_redis()
    with patched_environment(values):
        reload_celery_app()
        worker = WorkerProcess(values, tmp_path / "worker.log", name=f"tls-{uuid.uuid4().hex[:6]}")
        api = ApiProcess(values, tmp_path / "api.log")
        worker.start()
        try:
            api.start()
            run_id = (await start_run("probe", {"width": 2})).run.id
            run = await wait_run(run_id, worker=worker, timeout=60)
            assert run.status is RunStatus.SUCCEEDED, run.error
            with api.client() as client:
                assert client.get(f"/runs/{run_id}").json()["status"] == "succeeded"
                health = client.get("/health")
                assert health.status_code == 200, health.text
        finally:
            api.stop()
            worker.stop()
