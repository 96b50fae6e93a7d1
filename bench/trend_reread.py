"""What a worker's reread of the shop's trend costs: one stall of its loop per refresh.

A model with a trend term (SASRec ``trend_days``) replaces its checkpoint's trend with
the stream's trending items every ``RECO_TREND_REFRESH_S``. This times that reread as
the scorer does it (``Store.trending_counts``, the map to model columns, the logs)
over a trending zset as large as the Toys_and_Games catalogue, on a Redis of its own.

    python -m bench.trend_reread [--items 11924] [--repeats 30]

Writes ``bench/results/trend_reread.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

import numpy as np
from redis import asyncio as aioredis

from bench.common import cpu_description, header, write_results
from models.trend import log_counts
from streams import keys
from streams.services import start_redis
from streams.serving.serve import model_counts
from streams.state import Store

DAY_S = 86_400


async def _time(url: str, items: int, repeats: int) -> list[float]:
    client = aioredis.from_url(url)
    rng = np.random.default_rng(0)
    weights = rng.exponential(5.0, items)
    await client.zadd(keys.TRENDING, {str(i + 1): float(w) for i, w in enumerate(weights)})
    await client.set(keys.TRENDING_EPOCH, 0)
    store = Store(client)
    columns = np.arange(items + 1)  # store index -> model column, as the scorer keeps it
    seconds = []
    try:
        for _ in range(repeats):
            started = time.perf_counter()
            indices, decayed = await store.trending_counts(DAY_S)
            log_counts(model_counts(columns, indices, decayed, items + 1))
            seconds.append(time.perf_counter() - started)
    finally:
        await store.close()
    return seconds


def run(items: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="reco-bench-trend-") as tmp:
        redis = start_redis(tmp)
        try:
            seconds = asyncio.run(_time(redis.url, items, repeats))
        finally:
            redis.stop()
    return {
        **header(cpu_description()),
        "dataset": f"{items} trending items (the Toys_and_Games catalogue's size), random weights",
        "items": items,
        "repeats": repeats,
        "reread_ms_median": round(1000 * statistics.median(seconds), 2),
        "reread_ms_max": round(1000 * max(seconds), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=11_924)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    result = run(args.items, args.repeats)
    write_results("trend_reread", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
