"""Announce a published model version on the model-updates topic, acknowledged by the broker."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from models.registry import ModelVersion
from schemas.codec import Codec
from schemas.errors import ConfigError, ServiceError
from streams.settings import Settings


@dataclass(frozen=True)
class Announcement:
    """Where the ModelUpdate record landed."""

    topic: str
    partition: int
    offset: int


def encode_update(version: ModelVersion, codec: Codec) -> tuple[bytes, bytes]:
    """Key (the model name) and value (the ModelUpdate record) of an announcement."""
    return version.name.encode(), codec.encode("ModelUpdate", version.to_record())


async def announce(version: ModelVersion, settings: Settings, timeout: float = 30) -> Announcement:
    """Send the version's ModelUpdate record and wait until every in-sync replica has it.

    Raises ``ConfigError`` without a bootstrap address, ``ServiceError`` when the broker
    cannot be reached or does not acknowledge within ``timeout`` seconds.
    """
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ConfigError("announcing a model version needs KAFKA_BOOTSTRAP_SERVERS")
    topic = settings.topic_model_updates
    key, value = encode_update(version, Codec(settings.wire_format))
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="reco-announce",
        acks="all",
        request_timeout_ms=max(1000, int(timeout * 1000)),
    )
    what = f"announcing {version.name} {version.version} on {topic!r} at {bootstrap}"
    try:
        await asyncio.wait_for(producer.start(), timeout)
        meta = await asyncio.wait_for(producer.send_and_wait(topic, value=value, key=key), timeout)
    except (KafkaError, OSError) as exc:
        raise ServiceError(f"{what} failed: {exc!r}") from exc
    except TimeoutError as exc:
        raise ServiceError(f"{what}: no acknowledgement within {timeout:.0f}s") from exc
    finally:
        await producer.stop()
    return Announcement(meta.topic, meta.partition, meta.offset)
