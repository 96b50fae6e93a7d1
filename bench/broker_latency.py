"""The broker alone: produce-to-consume latency of plain aiokafka at a fixed rate, per window.

Tells the worker's share of an end-to-end latency from the broker's: one producer at
``--rate`` records/s into a fresh topic, one consumer reading it, no worker between.

    python -m bench.broker_latency [--rate 1000] [--seconds 35] [--fetch-max-wait-ms 25]

Writes ``bench/results/broker_latency.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import time
import uuid

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import machine, settings_from_env, write_results
from streams.embedded import EmbeddedStack
from streams.topics import ensure_topics

WINDOW_S = 5


async def measure(
    rate: float,
    seconds: float,
    partitions: int = 4,
    bootstrap_servers: str | None = None,
    redis_url: str | None = None,
    fetch_max_wait_ms: int | None = None,
) -> dict[str, object]:
    """The configured broker when given, else an embedded one started for the run; the
    consumer waits per fetch as a worker does (``fetch_max_wait_ms``, the worker's
    setting from the environment when not given)."""
    if fetch_max_wait_ms is None:
        fetch_max_wait_ms = settings_from_env().fetch_max_wait_ms
    n = int(rate * seconds)
    async with EmbeddedStack(bootstrap_servers, redis_url) as stack:
        bootstrap = stack.bootstrap_servers
        topic = f"broker-latency-{uuid.uuid4().hex[:8]}"
        await ensure_topics(bootstrap, {topic: partitions})
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
        await consumer.start()
        await producer.start()
        sent: dict[bytes, float] = {}
        got: dict[bytes, float] = {}
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)

            async def consume() -> None:
                while len(got) < n:
                    batch = await consumer.getmany(timeout_ms=100)
                    now = time.perf_counter()
                    for records in batch.values():
                        for r in records:
                            got[r.value or b""] = now

            reader = asyncio.create_task(consume())
            start = time.perf_counter()
            for i in range(n):
                ahead = start + i / rate - time.perf_counter()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                value = str(i).encode()
                sent[value] = time.perf_counter()
                await producer.send(topic, value, key=str(i % 5000).encode())
            await asyncio.wait_for(reader, 60)
        finally:
            await producer.stop()
            await consumer.stop()
        out: dict[str, object] = {
            "dataset": f"{n:,} records of a few bytes at {rate:,.0f}/s, {partitions} partitions",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": await machine(stack),
            "fetch_max_wait_ms": fetch_max_wait_ms,
        }
    per = int(rate * WINDOW_S)
    order = [str(i).encode() for i in range(n)]
    lat = np.array([(got[k] - sent[k]) * 1000 for k in order])
    out["p50_ms"] = float(np.percentile(lat, 50))
    out["p99_ms"] = float(np.percentile(lat, 99))
    for w in range(0, n, per):
        part = lat[w : w + per]
        start_s, end_s = w // int(rate), (w + per) // int(rate)
        out[f"p99_ms_{start_s}_{end_s}s"] = float(np.percentile(part, 99))
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=35.0)
    parser.add_argument("--fetch-max-wait-ms", type=int, default=None)
    args = parser.parse_args()
    result = asyncio.run(measure(args.rate, args.seconds, fetch_max_wait_ms=args.fetch_max_wait_ms))
    write_results("broker_latency", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
