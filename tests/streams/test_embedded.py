"""The embedded stack (Tansu + redis-server) and explicit topic creation, against real servers."""

from __future__ import annotations

import asyncio
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from schemas.errors import ConfigError, ServiceError
from streams.embedded import EmbeddedStack, start_redis, start_tansu
from streams.probes import port_is_open
from streams.topics import delete_topics, ensure_topics

pytestmark = pytest.mark.integration


async def _round_trip(bootstrap: str, topic: str) -> tuple[set[int], list[tuple[bytes, bytes]]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"user-1")
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        received: list[tuple[bytes, bytes]] = []
        deadline = time.monotonic() + 15
        while not received and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            received += [(m.key, m.value) for ms in batches.values() for m in ms]
        return partitions, received
    finally:
        await consumer.stop()


def test_stack_round_trip_and_stop_closes_ports() -> None:
    started = time.monotonic()
    with EmbeddedStack() as stack:
        elapsed = time.monotonic() - started
        assert elapsed < 10, f"stack took {elapsed:.1f}s to start"
        assert stack.bootstrap_servers.startswith("127.0.0.1:")
        assert stack.redis_url.startswith("redis://127.0.0.1:")
        assert stack.log_dir is not None and stack.log_dir.is_dir()
        assert stack.tansu is not None and stack.redis is not None
        kafka_port, redis_port = stack.tansu.port, stack.redis.port
        log_dir = stack.log_dir

        asyncio.run(ensure_topics(stack.bootstrap_servers, {"round-trip": 3}))
        partitions, received = asyncio.run(_round_trip(stack.bootstrap_servers, "round-trip"))
        assert partitions == {0, 1, 2}
        assert received == [(b"user-1", b"hello")]

        client = redis.Redis.from_url(stack.redis_url)
        assert client.ping() is True
        client.close()

    assert not port_is_open("127.0.0.1", kafka_port)
    assert not port_is_open("127.0.0.1", redis_port)
    assert not log_dir.exists()


def test_stack_starts_only_what_is_not_configured(redis_url: str) -> None:
    with EmbeddedStack(redis_url=redis_url) as stack:
        assert stack.redis is None and stack.redis_url == redis_url
        assert stack.tansu is not None and stack.bootstrap_servers == stack.tansu.address
    with EmbeddedStack("broker:9092", "redis://cache:6379/0") as stack:
        assert stack.tansu is None and stack.redis is None


def test_stack_usable_from_async_code() -> None:
    async def main() -> str:
        async with EmbeddedStack() as stack:
            await ensure_topics(stack.bootstrap_servers, {"from-async": 1})
            return stack.bootstrap_servers

    bootstrap = asyncio.run(main())
    host, _, port = bootstrap.rpartition(":")
    assert not port_is_open(host, int(port))


def test_missing_redis_server_is_a_service_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ServiceError, match="redis-server is not on PATH"):
        start_redis()


def test_missing_tansu_binary_is_a_service_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(ServiceError, match="no Tansu broker binary"):
        start_tansu()


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_broker_that_dies_reports_its_log(tmp_path: Path) -> None:
    binary = _script(tmp_path / "dies", "echo 'bind: address in use' >&2\nexit 1\n")
    with pytest.raises(ServiceError, match="exited during start") as info:
        start_tansu(tmp_path, binary=binary)
    assert "address in use" in str(info.value)


def test_broker_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    binary = _script(tmp_path / "hangs", "echo still booting\nexec sleep 30\n")
    started = time.monotonic()
    with pytest.raises(ServiceError, match="did not become ready") as info:
        start_tansu(tmp_path, binary=binary, timeout=0.5)
    assert "still booting" in str(info.value)
    assert time.monotonic() - started < 10


def test_ensure_topics_is_idempotent_and_checks_counts(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("ensure", partitions=2)
    asyncio.run(ensure_topics(kafka_bootstrap, {topic: 2}))
    with pytest.raises(ConfigError, match="wrong partition count"):
        asyncio.run(ensure_topics(kafka_bootstrap, {topic: 5}))
    with pytest.raises(ConfigError, match="must be >= 1"):
        asyncio.run(ensure_topics(kafka_bootstrap, {"never-made": 0}))


def test_delete_topics_tolerates_unknown_topics(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("delete")
    asyncio.run(delete_topics(kafka_bootstrap, [topic, topic + "-unknown"]))

    async def names() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            return await admin.list_topics()
        finally:
            await admin.close()

    assert topic not in asyncio.run(names())


def test_unreachable_broker_is_a_service_error() -> None:
    from streams.probes import free_port

    with pytest.raises(ServiceError, match="cannot reach Kafka"):
        asyncio.run(ensure_topics(f"127.0.0.1:{free_port()}", {"x": 1}, timeout=2))


def test_redis_client_starts_empty(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("k", "v")
    assert redis_client.get("k") == b"v"
