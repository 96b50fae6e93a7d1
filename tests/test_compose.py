"""docker-compose.yml: valid, on Apache Kafka in KRaft mode, with the settings the worker reads.

No Docker engine runs here, so the file is checked as configuration only: with
``docker compose config`` when the compose plugin is installed (it needs no engine),
else by reading the YAML.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import KAFKA_IMAGE, REDIS_IMAGE

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
WORKER_SETTINGS = {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "RECO_PSEUDONYM_SECRET"}


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run(
        [docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False
    )
    return [docker, "compose", "-f", str(COMPOSE_FILE)] if probe.returncode == 0 else None


def _compose_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECO_", "COMPOSE_"))}
    return {**env, **extra}


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in raw.items()}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose model: resolved by the compose CLI when present, else the raw YAML."""
    cli = _compose_cli()
    if cli is None:
        loaded = yaml.safe_load(COMPOSE_FILE.read_text())
        assert isinstance(loaded, dict)
        return loaded
    env = _compose_env(RECO_PSEUDONYM_SECRET="test-secret")
    quiet = subprocess.run(
        [*cli, "config", "-q"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert quiet.returncode == 0, quiet.stderr
    full = subprocess.run(
        [*cli, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    resolved: dict[str, Any] = json.loads(full.stdout)
    return resolved


def test_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    assert services["redis"]["image"] == REDIS_IMAGE
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["redis"]


def test_kafka_is_apache_kafka_in_kraft_mode(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == KAFKA_IMAGE
    assert kafka["image"].startswith("apache/kafka:")
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    # Topics are created explicitly with their partition counts, never by accident.
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"


def test_worker_reads_exactly_its_settings(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    env = _environment(worker)
    assert set(env) == WORKER_SETTINGS
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert "build" in worker
    command = worker["command"]
    assert (command.split() if isinstance(command, str) else command) == ["reco", "worker"]
    depends = worker["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["redis"]["condition"] == "service_healthy"


def test_pseudonym_secret_comes_from_the_host() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    secret = raw["services"]["worker"]["environment"]["RECO_PSEUDONYM_SECRET"]
    assert secret.startswith("${RECO_PSEUDONYM_SECRET:?")
    cli = _compose_cli()
    if cli is None:
        return
    missing = subprocess.run(
        [*cli, "config", "-q"],
        capture_output=True,
        text=True,
        env=_compose_env(),
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0
    assert "RECO_PSEUDONYM_SECRET" in missing.stderr


def test_dockerfile_installs_cpu_torch_before_the_project() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert [line for line in lines if line.startswith("FROM")] == ["FROM python:3.11-slim"]
    torch = next(i for i, line in enumerate(lines) if "torch==" in line)
    project = next(i for i, line in enumerate(lines) if "pip install ." in line)
    assert "download.pytorch.org/whl/cpu" in lines[torch]
    assert torch < project
