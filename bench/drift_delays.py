"""How soon each drift monitor alerts, and how often it alarms on nothing.

``python -m bench.drift_delays [--seeds N] [--stationary N] [--worker-seeds ...]``:

- Monitor level: the generated streams of ``tests/models/drift/test_monitors.py`` (a
  change injected at observation 20,000), ``--seeds`` seeds per monitor: min / median /
  max delay in observations and alarms before the change; then ``--stationary``
  stationary streams of 100,000 values per monitor: alarms.
- Worker level, on a local ``redis-server``: the generated shops of
  ``tests/streams/test_drift.py`` (users joining at a steady rate, one drift injected
  at 0.6 of the timeline) streamed through two in-process workers, and a SASRec
  trained before the drift serving one; per seed, the purchases from the drift to each
  monitor's first alert, and any alert before the drift.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import redis

from bench.common import cpu_description, write_results
from models.datasets import generate
from streams.services import start_redis
from tests.models.drift.test_monitors import KINDS, STATIONARY, delay, first_alerts
from tests.streams.test_drift import (
    DELAY_BOUND,
    STEADY,
    drift_index,
    purchases,
    stream_to_a_model_trained_before,
    stream_to_two_workers,
)

NAME = "drift_delays"
INJECTED: dict[str, dict[str, Any]] = {
    "prices_up_30pct": {"price_drift": 1.3},
    "new_items_150": {"new_items": 150},
    "wave_500": {"wave": 500},
}


def monitor_level(seeds: int, stationary: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in KINDS.items():
        delays, early = [], 0
        for seed in range(seeds):
            before, after = delay(kind, seed, extra=5 * kind.bound)
            early += len(before)
            if after is not None:
                delays.append(after)
        alarms = sum(
            len(
                first_alerts(
                    kind.make(), kind.draw(np.random.default_rng(10_000 + i), STATIONARY, False)
                )
            )
            for i in range(stationary)
        )
        out[f"monitor.{name}.delay_min"] = min(delays) if delays else None
        out[f"monitor.{name}.delay_median"] = statistics.median(delays) if delays else None
        out[f"monitor.{name}.delay_max"] = max(delays) if delays else None
        out[f"monitor.{name}.missed"] = seeds - len(delays)
        out[f"monitor.{name}.alarms_before_change"] = early
        out[f"monitor.{name}.alarms_stationary"] = alarms
        print(
            name, {k.split(".")[-1]: v for k, v in out.items() if k.startswith(f"monitor.{name}.")}
        )
    return out


def worker_level(seeds: Sequence[int]) -> dict[str, Any]:
    firsts: dict[str, list[int]] = {}
    early: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, start_redis(Path(tmp)) as server:
        for seed in seeds:
            runs: list[tuple[str, dict[str, int], int]] = []
            for label, injected in INJECTED.items():
                shop = generate(
                    **{**STEADY, "seed": seed}, drift_at=0.6, shift_categories=False, **injected
                )
                drift_at = drift_index(shop)
                alerts = stream_to_two_workers(
                    server.url, shop, purchases(shop)[: drift_at + DELAY_BOUND]
                )
                first: dict[str, int] = {}
                for n, a in alerts:
                    first.setdefault(a["monitor"], n)
                runs.append((label, first, drift_at))
                _flush(server.url)
            shop = generate(**{**STEADY, "seed": seed}, drift_at=0.6, new_items=150)
            raised, _ = stream_to_a_model_trained_before(
                server.url, shop, Path(tmp) / f"registry-{seed}"
            )
            runs.append(("trained_model_new_items_150", raised, drift_index(shop)))
            _flush(server.url)
            for label, first, drift_at in runs:
                for monitor, n in first.items():
                    key = f"{label}.{monitor}"
                    if n <= drift_at:
                        early[key] = early.get(key, 0) + 1
                    else:
                        firsts.setdefault(key, []).append(n - drift_at)
                print(seed, label, {m: n - drift_at for m, n in first.items()})
    out: dict[str, Any] = {}
    for key, values in sorted(firsts.items()):
        out[f"workers.{key}.delay_max"] = max(values)
        out[f"workers.{key}.alerted_seeds"] = len(values)
    for key, n in sorted(early.items()):
        out[f"workers.{key}.alerts_before_drift"] = n
    out["workers.alerts_before_drift"] = sum(early.values())
    return out


def _flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--stationary", type=int, default=20)
    parser.add_argument("--worker-seeds", type=int, nargs="*", default=[2, 3, 4, 5])
    args = parser.parse_args(argv)
    results: dict[str, Any] = {
        "data_set": "generated streams (tests/models/drift/test_monitors.py) and "
        "models.datasets.synthetic.generate shops (tests/streams/test_drift.py)",
        "date": dt.date.today().isoformat(),
        "machine": cpu_description(),
        "seeds": args.seeds,
        "stationary_streams": args.stationary,
        "worker_seeds": ",".join(map(str, args.worker_seeds)),
    }
    results |= monitor_level(args.seeds, args.stationary)
    if args.worker_seeds:
        results |= worker_level(args.worker_seeds)
    path = write_results(NAME, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
