"""Real Kafka and Redis for integration tests, and the rule that keeps benchmarks opt-in.

Each service comes from, in order: its environment variable, a testcontainers
container when a Docker engine answers, or a local binary on a free loopback port.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import os
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis

from schemas.errors import ServiceError
from streams.embedded import start_redis, start_tansu
from streams.probes import free_port, kafka_metadata_brokers
from streams.topics import delete_topics, ensure_topics

# The same images docker-compose.yml runs (tests/test_compose.py checks that).
KAFKA_IMAGE = "apache/kafka:3.9.0"
REDIS_IMAGE = "redis:7.2"

T = TypeVar("T")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    markexpr = config.getoption("markexpr", default="") or ""
    if re.search(r"\bbenchmark\b", markexpr):
        return
    skip = pytest.mark.skip(reason="benchmark: run with -m benchmark")
    for item in items:
        if "benchmark" in item.keywords:
            item.add_marker(skip)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@functools.cache
def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _wait_for_kafka(bootstrap: str, timeout: float = 60) -> None:
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            if kafka_metadata_brokers(host, int(port)):
                return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise ServiceError(f"Kafka container at {bootstrap} not ready after {timeout:.0f}s")
        time.sleep(0.5)


def _kafka_container() -> Iterator[str]:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient

    # The advertised address must be the one this process dials, so the host port is
    # fixed before start rather than picked by Docker.
    host, host_port = DockerClient().host(), free_port()
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(19092, host_port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENERS",
            "PLAINTEXT://:9092,CONTROLLER://:9093,PLAINTEXT_HOST://:19092",
        )
        .with_env(
            "KAFKA_ADVERTISED_LISTENERS",
            f"PLAINTEXT://localhost:9092,PLAINTEXT_HOST://{host}:{host_port}",
        )
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT",
        )
        .with_env("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
        # As in docker-compose.yml: a test that forgets to create its topic fails here too.
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    with container:
        bootstrap = f"{host}:{host_port}"
        _wait_for_kafka(bootstrap)
        yield bootstrap


def _redis_container() -> Iterator[str]:
    from testcontainers.community.redis import RedisContainer

    container = RedisContainer(REDIS_IMAGE).with_command(
        ["redis-server", "--save", "", "--appendonly", "no"]
    )
    with container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka-protocol broker, e.g. ``127.0.0.1:40123``."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
    elif _docker_answers():
        yield from _kafka_container()
    else:
        with start_tansu(tmp_path_factory.mktemp("tansu")) as tansu:
            yield tansu.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis; never the machine's own on 6379 unless REDIS_URL says so."""
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
    elif _docker_answers():
        yield from _redis_container()
    else:
        with start_redis(tmp_path_factory.mktemp("redis")) as server:
            yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A sync client on the database of ``redis_url``, emptied before and after the test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def topic_factory(kafka_bootstrap: str) -> Iterator[Callable[..., str]]:
    """``make(prefix="test", partitions=1) -> name``: a new, explicitly created topic.

    Names are unique per call, so tests never share offsets or consumer groups' state;
    the topics are deleted afterwards.
    """
    created: list[str] = []

    def make(prefix: str = "test", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        _run(ensure_topics(kafka_bootstrap, {name: partitions}))
        created.append(name)
        return name

    yield make
    # The broker may be gone already; leftover topics have unique names anyway.
    if created:
        with contextlib.suppress(ServiceError):
            _run(delete_topics(kafka_bootstrap, created))
