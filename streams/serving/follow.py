"""Follow the model-updates topic: every worker reads all of it, outside any consumer group."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.codec import Codec
from schemas.errors import SchemaError
from streams.serving.holder import ModelHolder
from streams.settings import Settings

log = logging.getLogger(__name__)
_RETRY_S = 2.0


async def _assign(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            return tps
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.5)


def latest_update(records: list[Any], codec: Codec, name: str) -> dict[str, Any] | None:
    """The last decodable ModelUpdate for ``name`` among records in log order."""
    for record in reversed(records):
        try:
            update = codec.decode("ModelUpdate", record.value)
        except SchemaError as exc:
            log.error("undecodable model update at offset %d: %s", record.offset, exc)
            continue
        if update["name"] == name:
            return update
    return None


async def follow(settings: Settings, *holders: ModelHolder, poll_ms: int = 500) -> None:
    """Offer every announced version of each holder's model name to that holder, forever.

    The topic is read from its beginning so a worker that starts later serves the
    last announced version too; of a backlog only the newest version is loaded. A
    group would hand each update to one worker only, so no group is used and no
    offset is committed.
    """
    codec = Codec(settings.wire_format)
    topic = settings.topic_model_updates
    while True:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            client_id=f"{settings.app_id}-model-updates",
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=poll_ms,
        )
        try:
            await consumer.start()
            await _assign(consumer, topic)
            while True:
                batch = await consumer.getmany(timeout_ms=poll_ms, max_records=10_000)
                records = sorted(
                    (r for rs in batch.values() for r in rs), key=lambda r: (r.timestamp, r.offset)
                )
                for holder in holders:
                    update = latest_update(records, codec, holder.name)
                    if update is not None:
                        await holder.offer(update)
        except asyncio.CancelledError:
            raise
        except (KafkaError, OSError) as exc:
            log.warning("following %s failed (%r); retrying in %.0fs", topic, exc, _RETRY_S)
        finally:
            await consumer.stop()
        await asyncio.sleep(_RETRY_S)
