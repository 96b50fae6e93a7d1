"""Forward purchases to the recommendations topic unchanged: the ceilings below a worker.

``python -m bench.forward raw``: aiokafka consumer -> producer, no framework; prints its
own timing as one JSON line when ``--count`` records are delivered, then exits.

``python -m bench.forward faust``: the worker's own Faust app (``create_app``, so the
same settings) with its agents swapped for one that forwards each micro-batch the way
streams/worker.py sends outputs. Runs until stopped, like a worker.

Both read their settings from the environment, as ``reco worker`` does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from typing import Any, cast

from bench.common import settings_from_env
from streams.settings import Settings


async def raw(settings: Settings, count: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = settings.kafka_bootstrap_servers or ""
    consumer = AIOKafkaConsumer(
        settings.topic_purchases,
        bootstrap_servers=bootstrap,
        group_id=settings.app_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    # The producer settings of streams.replay: what this project asks of aiokafka.
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024, acks="all"
    )
    start = time.perf_counter()
    await consumer.start()
    await producer.start()
    pending: list[asyncio.Future[Any]] = []
    first: float | None = None
    try:
        while len(pending) < count:
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                if first is None:
                    first = time.perf_counter()
                for r in records:
                    pending.append(
                        await producer.send(settings.topic_recommendations, r.value, key=r.key)
                    )
        await asyncio.gather(*pending)
        done = time.perf_counter()
        await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    assert first is not None
    return {
        "forwarded": float(len(pending)),
        "seconds_first_to_delivered": done - first,
        "seconds_from_start": done - start,
    }


def faust_forwarder(settings: Settings) -> None:
    import faust

    from streams.worker import create_app, require_services

    bootstrap, redis_url = require_services(settings)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    app = create_app(settings, bootstrap, redis_url)
    # An agent's topic is only subscribed once the agent runs, so the worker's agents
    # can be dropped here and leave nothing behind but the app and its settings.
    for name in list(app.agents):
        del app.agents[name]
    source = app.topic(
        settings.topic_purchases,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    out = settings.topic_recommendations

    @app.agent(source, name="forward")
    async def forward(stream: faust.StreamT) -> None:
        # take_events is defined on Stream but missing from the StreamT interface.
        batches = cast(faust.Stream, stream).take_events(
            settings.batch_size, within=settings.batch_within_s
        )
        async for events in batches:
            pending = [
                await app.producer.send(out, e.message.key, e.message.value, None, None, None)
                for e in events
            ]
            if pending:
                await asyncio.gather(*pending)

    worker = faust.Worker(app, loglevel="info", loop=loop, redirect_stdouts=False)
    worker.execute_from_commandline()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.forward", description=__doc__)
    parser.add_argument("mode", choices=("raw", "faust"))
    parser.add_argument("--count", type=int, default=100_000, help="raw: records to forward")
    args = parser.parse_args(argv)
    settings = settings_from_env()
    if args.mode == "raw":
        print(json.dumps(asyncio.run(raw(settings, args.count))), flush=True)
    else:
        faust_forwarder(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
