"""Timing on the Kafka side: when output records arrive, how much input a group acked."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

# Tansu 0.6 holds a fetch for about half its max-wait even when records arrive meanwhile
# (aiokafka at 1,000 msg/s: p50 400 ms with a 1,500 ms max-wait, 2.4 ms with 10 ms), so
# the measuring consumer asks with a short one to add only milliseconds to what it measures.
PROBE_FETCH_WAIT_MS = 10
# Faust starts and joins its group in seconds; a minute without output means it is stuck.
JOIN_TIMEOUT_S = 120.0
STALL_TIMEOUT_S = 60.0
_POLL_FINISHED_S = 0.5
_SETTLE_S = 0.5


class OutputClock:
    """Reads a topic from its beginning in the background and notes when records arrive.

    ``decode`` maps a record value to an id; arrival times are then kept per id.
    """

    def __init__(
        self, bootstrap: str, topic: str, decode: Callable[[bytes], str] | None = None
    ) -> None:
        self.topic = topic
        self.decode = decode
        self.count = 0
        self.first: float | None = None
        self.first_batch = 0
        self.last: float | None = None
        self.arrivals: dict[str, float] = {}
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=PROBE_FETCH_WAIT_MS,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        for _ in range(100):
            if parts:
                break
            await asyncio.sleep(0.1)
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            await self._consumer.stop()
            raise RuntimeError(f"topic {self.topic} has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.perf_counter()
            n = sum(len(records) for records in batch.values())
            if not n:
                continue
            if self.first is None:
                self.first, self.first_batch = now, n
            self.last = now
            self.count += n
            if self.decode is not None:
                for records in batch.values():
                    for r in records:
                        self.arrivals[self.decode(r.value)] = now

    async def wait_for(
        self,
        count: int,
        *,
        join_timeout: float,
        stall_timeout: float,
        check: Callable[[], None] = lambda: None,
        finished: Callable[[], Awaitable[bool]] | None = None,
    ) -> bool:
        """Until ``count`` records arrived, or ``finished()`` says no more will come.

        False when no record arrives within ``join_timeout`` or progress stalls.
        """
        start = time.perf_counter()
        seen, progress, polled = self.count, start, start
        while self.count < count:
            if self._task is not None and self._task.done():
                self._task.result()
            check()
            await asyncio.sleep(0.05)
            now = time.perf_counter()
            if self.count != seen:
                seen, progress = self.count, now
            if self.first is None and now - start > join_timeout:
                return False
            if self.first is not None and now - progress > stall_timeout:
                return False
            if finished is not None and now - polled > _POLL_FINISHED_S:
                polled = now
                if await finished():
                    # What was delivered before the input was acked may still be in flight.
                    await self.settle(_SETTLE_S)
                    return True
        return True

    async def settle(self, quiet: float) -> None:
        """Until no record has arrived for ``quiet`` seconds."""
        while self.last is None or time.perf_counter() - self.last < quiet:
            await asyncio.sleep(0.05)

    def rate_first_to_last(self) -> float:
        """Records after the first fetch over the time from first to last fetch."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.count - self.first_batch) / (self.last - self.first)


class GroupProgress:
    """How many records of a topic a consumer group has acked (its committed offsets).

    Record offsets are right on Tansu too (unlike its ListOffsets), and a topic that
    was empty before the run starts at offset 0, so their sum counts the records.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        self.group = group
        # Naming the partitions: aiokafka cannot decode Tansu's answer to "all of them".
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="reco-bench")

    async def __aenter__(self) -> Self:
        await self._admin.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def acked(self) -> int:
        offsets = await self._admin.list_consumer_group_offsets(
            self.group, partitions=self._partitions
        )
        return sum(o.offset for o in offsets.values() if o.offset > 0)

    def reached(self, count: int) -> Callable[[], Awaitable[bool]]:
        async def done() -> bool:
            return await self.acked() >= count

        return done
