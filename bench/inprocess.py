"""A worker's own cost per event, without the broker: ``Processor.interactions`` in-process.

Toys_and_Games purchases in time order go through the processor in micro-batches of
``--batch`` on a real Redis of its own (started here, emptied before each round),
with a SASRec of the default shape trained one epoch (its cost, not its quality, is
what is measured), the catalogue published first, one torch thread and ``gc.freeze()``
after the warm-up as a worker has them. The first ``--warm`` purchases warm the
caches and the shared segmentation (on Toys in time order the segmentation seeds its
centroids near the 6,800th purchase: a warm-up shorter than that times a worker that
does not segment yet for part of the run); the next ``--events`` are timed, ``--rounds``
times, and the best round is kept. What a micro-batch costs in the
stream is this plus what the broker, the consumer thread and the machine's other
processes take from it (BENCHMARKS.md, serving).

    python -m bench.inprocess [--events 10000] [--batch 200 55] [--rounds 2] [--warm 8000]

Writes ``bench/results/inprocess.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from redis import asyncio as aioredis

from bench.common import (
    cpu_description,
    fresh_settings,
    header,
    settings_from_env,
    tag,
    write_results,
)
from bench.topk_widths import one_epoch_toys
from models.registry import Registry
from schemas.codec import Codec
from streams.processor import Message, Processor
from streams.services import start_redis
from streams.serving.holder import ModelHolder, load_served
from streams.settings import Settings
from streams.state import Store


def _messages(
    topic: str, schema: str, key: str, records: list[dict[str, Any]], codec: Codec
) -> list[Message]:
    return [
        Message(topic, 0, i, r[key].encode(), codec.encode(schema, r))
        for i, r in enumerate(records)
    ]


async def _flush(url: str) -> None:
    client = aioredis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def _round(
    s: Settings, update: dict[str, Any], products: list[Message], purchases: list[Message],
    warm: int, batch: int,
) -> float:  # fmt: skip
    """Seconds for the purchases after ``warm``."""
    store = Store.from_url(s.redis_url or "", trending_tau_s=s.trending_tau_s)
    holder = ModelHolder(s.model_name)
    holder.install(load_served(update))
    proc = Processor(s, store, holder=holder)
    try:
        for lo in range(0, len(products), 1000):
            await proc.catalog(products[lo : lo + 1000])
        for lo in range(0, warm, batch):
            await proc.interactions(purchases[lo : min(lo + batch, warm)])
        gc.collect()
        gc.freeze()
        began = time.perf_counter()
        for lo in range(warm, len(purchases), batch):
            await proc.interactions(purchases[lo : lo + batch])
        return time.perf_counter() - began
    finally:
        gc.unfreeze()
        await store.close()


async def run(events: int, batches: list[int], rounds: int, warm: int) -> dict[str, Any]:
    torch.set_num_threads(1)
    ds, _, model, trained = one_epoch_toys()
    base = settings_from_env()
    out: dict[str, Any] = {
        "dataset": f"{ds.name}: {len(ds.products):,} items, {events:,} purchases timed",
        **header(cpu_description()),
        "train_one_epoch_s": trained,
    }
    records = [r for kind, r in ds.events if kind == "purchase"][: warm + events]
    with tempfile.TemporaryDirectory(prefix="reco-bench-inprocess-") as tmp:
        update = (
            Registry(Path(tmp) / "registry")
            .publish(model.to_checkpoint({"epochs": 1.0}), base.model_name)
            .to_record()
        )
        redis = start_redis(tmp)
        try:
            s = fresh_settings(base, tag("inprocess")).model_copy(update={"redis_url": redis.url})
            codec = Codec(s.wire_format)
            products = _messages(s.topic_catalog, "Product", "item_id", ds.products, codec)
            purchases = _messages(s.topic_purchases, "Purchase", "user_id", records, codec)
            for batch in batches:
                best = float("inf")
                for _ in range(rounds):
                    await _flush(redis.url)
                    seconds = await _round(s, update, products, purchases, warm, batch)
                    best = min(best, seconds)
                out[f"batch_{batch}_ms_per_event"] = 1000 * best / events
                out[f"batch_{batch}_events_per_s"] = events / best
        finally:
            redis.stop()
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[200, 55])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warm", type=int, default=8_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.events, args.batch, args.rounds, args.warm))
    write_results("inprocess", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
