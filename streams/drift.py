"""Drift monitors in the worker: fed once per micro-batch, alerts debounced across workers.

Each worker watches the events of its own partitions (a change in what the shop sees
shows in every partition) with the monitors of ``models.drift``:

- ``online_hit_rate``: ADWIN on the judged purchases (1 for a hit, 0 for a miss);
- ``score_distribution``: the model's own score of its first candidate;
- ``category_mix``: PSI of the top-level categories of purchased items;
- ``price_level``: KS distance of purchase prices;
- ``new_items``, ``new_users``: ADWIN on the share of events whose item or user is new;
- ``segment_mix``: PSI of the segments of the users behind the events, so that a
  segment's share is its share of the activity.

An alert passes the worker's own debouncer, then a Redis ``SET NX EX`` per monitor, so
that two workers seeing the same shift send one ``DriftAlert``. Sent alerts are kept in
a short Redis list for the status view; an alert on the hit rate can ask the trainer
for a run (``RECO_RETRAIN_ON_DRIFT``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from redis import asyncio as aioredis

from models.drift.alerts import Alert, Debouncer
from models.drift.detectors import Monitor, ScoreMonitor, hit_rate_monitor, score_monitor
from models.drift.mix import KsMonitor, PsiMonitor, segment_mix_monitor, share_monitor
from streams import keys, metrics
from streams.evaluation import Verdict
from streams.serving.serve import Answer, ProductCache
from streams.settings import Settings
from streams.state.store import APPLIED, ApplyResult, Interaction

log = logging.getLogger(__name__)

ALERTS_KEPT = 100
HIT_RATE = "online_hit_rate"


@dataclass
class Observed:
    """What one micro-batch shows the monitors, each list in event order."""

    hits: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    prices: list[float] = field(default_factory=list)
    new_items: list[float] = field(default_factory=list)
    new_users: list[float] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    events: int = 0
    bought: list[str] = field(default_factory=list)  # item ids of applied purchases

    @classmethod
    def of_batch(
        cls,
        records: Sequence[dict[str, Any]],
        purchase: Sequence[bool],
        batch: Sequence[Interaction],
        result: ApplyResult,
        answers: Sequence[Answer],
        verdicts: Sequence[Verdict],
        segment_of: dict[str, int],
        version: str,
    ) -> Observed:
        """The batch's observations but categories (`categorise` reads the catalog).

        Scores are the serving ``version``'s only: a canary's or an A/B treatment's
        are on another model's scale.
        """
        seen = cls(events=len(records))
        seen.hits = [1.0 if v.hit else 0.0 for v in verdicts]
        seen.scores = [
            a.model_top for a in answers if a.model_top is not None and a.version == version
        ]
        first: set[str] = set()
        for rec, is_purchase, ev, status, idx in zip(
            records, purchase, batch, result.statuses, result.item_index, strict=True
        ):
            if status != APPLIED:
                continue
            if ev.uid in segment_of:
                seen.segments.append(segment_of[ev.uid])
            seen.new_items.append(1.0 if idx in result.created else 0.0)
            is_new = len(result.before[ev.uid]) == 0 and ev.uid not in first
            first.add(ev.uid)
            seen.new_users.append(1.0 if is_new else 0.0)
            if is_purchase:
                seen.bought.append(rec["item_id"])
                if rec.get("price") is not None:
                    seen.prices.append(float(rec["price"]))
        return seen

    async def categorise(self, products: ProductCache) -> None:
        """Top-level category of each purchased item ("(none)" when it has none)."""
        known = await products.get(self.bought)
        self.categories = [
            (known[i][0].category.split("/", 1)[0] if i in known else "") or "(none)"
            for i in self.bought
        ]


def monitors() -> dict[str, Monitor]:
    return {
        HIT_RATE: hit_rate_monitor(HIT_RATE),
        "score_distribution": score_monitor("score_distribution"),
        "category_mix": PsiMonitor("category_mix"),
        "price_level": KsMonitor("price_level"),
        "new_items": share_monitor("new_items"),
        "new_users": share_monitor("new_users"),
        "segment_mix": segment_mix_monitor(),
    }


class DriftWatch:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.clock = clock
        self.monitors = monitors()
        self._seen = 0
        self._version: str | None = None
        self.debouncer = Debouncer(
            cooldown_events=settings.drift_cooldown_events, cooldown_s=0.0, clock=clock
        )

    def _raised(self, seen: Observed) -> list[Alert]:
        m = self.monitors
        feeds: Sequence[tuple[str, Sequence[Any]]] = (
            (HIT_RATE, seen.hits),
            ("score_distribution", seen.scores),
            ("category_mix", seen.categories),
            ("price_level", seen.prices),
            ("new_items", seen.new_items),
            ("new_users", seen.new_users),
            ("segment_mix", seen.segments),
        )
        raised: list[Alert] = []
        for name, values in feeds:
            if values:
                raised += m[name].update_many(values)
        for name, monitor in m.items():
            value = getattr(monitor, "value", None)
            if isinstance(value, float):
                metrics.DRIFT_STATISTIC.labels(name).set(value)
        return raised

    async def observe(self, seen: Observed, model_version: str) -> list[dict[str, Any]]:
        """Feed one batch; the DriftAlert records this worker should send."""
        if model_version != self._version:
            # A new model scores on its own scale: its first scores are the new reference.
            # (A changed hit rate after a swap is news; a changed score scale is not.)
            if self._version is not None:
                score = self.monitors["score_distribution"]
                assert isinstance(score, ScoreMonitor)
                score.rebase()
            self._version = model_version
        # A worker's first events are a start-up, not a reference: on an empty store every
        # item and user is new and the lists are poor, and those shares settle within
        # the first thousands of events.
        self._seen += seen.events
        if self._seen <= self.settings.drift_warmup_events:
            return []
        alerts = self.debouncer.filter(self._raised(seen), events=seen.events)
        if not alerts:
            return []
        now_ms = int(self.clock() * 1000)
        cooldown = max(1, int(self.settings.drift_cooldown_s))
        pipe = self.redis.pipeline(transaction=False)
        for a in alerts:
            pipe.set(keys.drift_cooldown(a.monitor), now_ms, nx=True, ex=cooldown)
        won = await pipe.execute()
        records = [a.record(model_version, now_ms) for a, w in zip(alerts, won, strict=True) if w]
        if not records:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for r in records:
            pipe.lpush(keys.DRIFT_ALERTS, json.dumps(r))
            metrics.DRIFT_ALERTS.labels(r["monitor"]).inc()
            log.warning(
                "drift: %s %s=%.4g beyond %.4g over %d observations (model %s)",
                r["monitor"],
                r["statistic"],
                r["value"],
                r["threshold"],
                r["window"],
                model_version,
            )
        pipe.ltrim(keys.DRIFT_ALERTS, 0, ALERTS_KEPT - 1)
        if self.settings.retrain_on_drift and any(r["monitor"] == HIT_RATE for r in records):
            pipe.set(keys.TRAIN_REQUESTED, now_ms)
        await pipe.execute()
        return records
