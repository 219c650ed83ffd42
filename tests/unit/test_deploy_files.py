"""compose.yaml, the Dockerfile, .env.example and the README's settings table, checked
statically (no Docker engine runs here): they must stay true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
ENTRYPOINT = (ROOT / "docker" / "entrypoint.sh").read_text()
OUR_IMAGES = {"reelflow:latest", "reelflow-gpu:latest"}


def entry_commands() -> set[str]:
    return set(re.findall(r"^  ([a-z-]+)\)\s*$", ENTRYPOINT, flags=re.M))


def env_example_names() -> set[str]:
    text = (ROOT / ".env.example").read_text()
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", text, flags=re.M))


def test_compose_services_and_dependencies() -> None:
    services = COMPOSE["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "gpu-worker", "flower"} <= set(
        services
    )
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    assert "--appendonly" in services["redis"]["command"]
    api_deps = services["api"]["depends_on"]
    assert api_deps["postgres"]["condition"] == "service_healthy"
    assert api_deps["redis"]["condition"] == "service_healthy"
    assert api_deps["migrate"]["condition"] == "service_completed_successfully"
    gpu = services["gpu-worker"]
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    assert services["flower"]["profiles"] == ["flower"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    for name in ("api", "worker", "gpu-worker", "migrate"):
        assert "artifacts:/data" in services[name]["volumes"], name


def test_every_service_has_a_health_check_and_a_real_entry_point() -> None:
    commands = entry_commands()
    assert {"api", "worker", "gpu-worker", "migrate", "healthcheck"} <= commands
    for name, service in COMPOSE["services"].items():
        if name in ("migrate", "flower"):
            continue
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
    for name, service in COMPOSE["services"].items():
        if service.get("image") in OUR_IMAGES:
            assert service["command"][0] in commands, (name, service["command"])


def test_flower_profile_answers_its_rest_api_and_brokers_are_configurable() -> None:
    flower = COMPOSE["services"]["flower"]
    assert set(flower["environment"]) == {"FLOWER_BASIC_AUTH", "FLOWER_UNAUTHENTICATED_API"}
    assert "${CELERY_BROKER_URL:-redis://redis:6379/0}" in " ".join(flower["command"])
    assert flower["ports"][0].startswith("${FLOWER_BIND:-127.0.0.1}:")
    rabbit = COMPOSE["services"]["rabbitmq"]
    assert rabbit["profiles"] == ["rabbitmq"] and "consumer_timeout" in str(rabbit["environment"])
    for name in ("api", "worker", "gpu-worker", "migrate"):
        assert "CELERY_BROKER_URL" in COMPOSE["services"][name]["environment"], name


def test_the_pgbouncer_profile_pools_in_transaction_mode_and_migrations_go_past_it() -> None:
    services = COMPOSE["services"]
    bouncer = services["pgbouncer"]
    assert bouncer["profiles"] == ["pgbouncer"]
    assert bouncer["environment"]["POOL_MODE"] == "transaction"
    assert bouncer["environment"]["DB_HOST"] == "postgres"
    assert bouncer["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in bouncer["healthcheck"]["test"]
    for name in ("api", "worker", "gpu-worker", "migrate"):
        env = services[name]["environment"]
        # through the pooler when POSTGRES_ADDRESS names it, and told so; migrations
        # (`reelflow db upgrade` reads DATABASE_DIRECT_URL) always straight to postgres
        assert "@${POSTGRES_ADDRESS:-postgres:5432}/" in env["DATABASE_URL"], name
        assert "@postgres:5432/" in env["DATABASE_DIRECT_URL"], name
        assert env["DATABASE_POOLER"] == "${DATABASE_POOLER:-none}", name
    for name in ("api", "worker", "gpu-worker"):
        waits = services[name]["depends_on"]["pgbouncer"]
        assert waits == {"condition": "service_healthy", "required": False}, name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "COMPOSE_PROFILES=pgbouncer" in (ROOT / "compose.yaml").read_text()


def test_the_gpu_node_shares_no_disk_and_names_what_it_must_reach() -> None:
    node = yaml.safe_load((ROOT / "compose.gpu-node.yaml").read_text())
    (name,) = node["services"]
    worker = node["services"][name]
    assert worker["command"] == ["gpu-worker"] and worker["command"][0] in entry_commands()
    assert worker["volumes"] == ["scratch:/data"]  # its own scratch, no shared artifacts
    env = worker["environment"]
    for required in ("DATABASE_URL", "REDIS_URL", "ARTIFACT_URL"):
        assert env[required].startswith(f"${{{required}:?"), required
    assert "s3" in worker["build"]["args"]["EXTRAS"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_every_variable_compose_uses_is_documented() -> None:
    text = (ROOT / "compose.yaml").read_text() + (ROOT / "compose.gpu-node.yaml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", text))
    used |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):", ENTRYPOINT))
    missing = used - env_example_names() - {"HOSTNAME"}
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_dockerfile_is_multi_stage_non_root_with_healthcheck() -> None:
    stages = re.findall(r"^FROM \S+ AS (\w+)", DOCKERFILE, flags=re.M)
    assert stages == ["build", "runtime"]
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, flags=re.M)
    assert "HEALTHCHECK" in DOCKERFILE and "espeak-ng" in DOCKERFILE
    assert 'ENTRYPOINT ["reelflow-entrypoint"]' in DOCKERFILE
    for source in re.findall(r"^COPY (?!--from)(\S+)", DOCKERFILE, flags=re.M):
        assert (ROOT / source).exists(), source
    for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, flags=re.M):
        for source in line.split()[:-1]:
            assert (ROOT / source).exists(), source


def test_settings_docs_are_current() -> None:
    script = ROOT / "scripts" / "settings_doc.py"
    env = subprocess.run([sys.executable, str(script), "env"], capture_output=True, text=True)
    assert env.stdout == (ROOT / ".env.example").read_text(), "regenerate .env.example"
    table = subprocess.run([sys.executable, str(script), "table"], capture_output=True, text=True)
    assert table.stdout.strip() in (ROOT / "README.md").read_text(), "regenerate README table"


def test_the_image_copies_every_package_the_wheel_ships() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    copied = set(re.findall(r"^COPY (\w+) \./\1$", DOCKERFILE, flags=re.M))
    assert packages <= copied, f"COPY into the build stage: {sorted(packages - copied)}"
    assert set(project["tool"]["mypy"]["packages"]) == packages
