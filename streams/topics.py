"""Explicit topic creation and deletion with the admin API.

Brokers that auto-create topics (Tansu on any metadata request, Kafka with
``auto.create.topics.enable``) pick their own partition count, and keying by user only
keeps one user's events in one partition if the count is the declared one. So every
topic is created here, before any producer or consumer names it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from schemas.errors import ConfigError, ServiceError

_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC_OR_PARTITION = 3
_POLL_S = 0.1


def _error_text(code: int, message: str | None) -> str:
    name = for_code(code).__name__
    return f"{name} ({code}){': ' + message if message else ''}"


async def _admin(bootstrap: str, timeout: float) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="reco-admin",
        request_timeout_ms=max(1000, int(timeout * 1000)),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
    except (KafkaError, OSError, TimeoutError) as exc:
        await admin.close()
        raise ServiceError(f"cannot reach Kafka at {bootstrap}: {exc!r}") from exc
    return admin


async def _partition_counts(admin: AIOKafkaAdminClient) -> dict[str, tuple[int, bool]]:
    """Per topic: partition count and whether every partition has a leader.

    Asks for all topics rather than by name, because naming a missing topic in a
    metadata request is what triggers auto-creation.
    """
    described: list[dict[str, Any]] = await admin.describe_topics()
    return {
        t["topic"]: (
            len(t["partitions"]),
            bool(t["partitions"]) and all(p["leader"] >= 0 for p in t["partitions"]),
        )
        for t in described
        if t["error_code"] == 0
    }


async def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    replication_factor: int = 1,
    timeout: float = 30,
) -> None:
    """Create each topic with its partition count; an existing topic must already match.

    Returns once every topic is visible with a leader for each partition.
    Raises ConfigError for a bad count or a mismatch, ServiceError when Kafka fails.
    """
    for name, partitions in topics.items():
        if not name or partitions < 1:
            raise ConfigError(f"topic {name!r}: partition count must be >= 1, got {partitions}")
    if replication_factor < 1:
        raise ConfigError(f"replication factor must be >= 1, got {replication_factor}")
    if not topics:
        return
    deadline = time.monotonic() + timeout
    admin = await _admin(bootstrap, timeout)
    try:
        new = [NewTopic(name, n, replication_factor) for name, n in topics.items()]
        try:
            response = await admin.create_topics(new, timeout_ms=int(timeout * 1000))
        except KafkaError as exc:
            raise ServiceError(f"creating topics {sorted(topics)} failed: {exc!r}") from exc
        failures = [
            f"{e['topic']}: {_error_text(e['error_code'], e.get('error_message'))}"
            for e in response.to_object()["topic_errors"]
            if e["error_code"] not in (0, _TOPIC_ALREADY_EXISTS)
        ]
        if failures:
            raise ConfigError("cannot create topics: " + "; ".join(failures))

        while True:
            try:
                seen = await _partition_counts(admin)
            except KafkaError as exc:
                raise ServiceError(f"describing topics failed: {exc!r}") from exc
            wrong = {
                name: seen[name][0]
                for name, n in topics.items()
                if name in seen and seen[name][0] != n
            }
            if wrong:
                detail = ", ".join(
                    f"{name} has {count}, wanted {topics[name]}" for name, count in wrong.items()
                )
                raise ConfigError(f"existing topics have the wrong partition count: {detail}")
            pending = sorted(name for name in topics if name not in seen or not seen[name][1])
            if not pending:
                return
            if time.monotonic() > deadline:
                raise ServiceError(f"topics not ready after {timeout:.0f}s: {pending}")
            await asyncio.sleep(_POLL_S)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str], timeout: float = 30) -> None:
    """Delete the named topics; a topic that does not exist is not an error."""
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return
    admin = await _admin(bootstrap, timeout)
    try:
        try:
            response = await admin.delete_topics(wanted, timeout_ms=int(timeout * 1000))
        except KafkaError as exc:
            raise ServiceError(f"deleting topics {wanted} failed: {exc!r}") from exc
        failures = [
            f"{e['topic']}: {_error_text(e['error_code'], None)}"
            for e in response.to_object()["topic_error_codes"]
            if e["error_code"] not in (0, _UNKNOWN_TOPIC_OR_PARTITION)
        ]
        if failures:
            raise ServiceError("cannot delete topics: " + "; ".join(failures))
    finally:
        await admin.close()
