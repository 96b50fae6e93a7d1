"""The model a worker serves: loaded and checked off the hot path, swapped as one reference.

A ModelUpdate names a checkpoint. The worker loads it in a thread, checks it (it
rebuilds from the file alone, scores a canary batch to finite values of the right
shape, and meets the metric floors of the settings), and only then points its
reference at it; the agents read that reference once per micro-batch, so a batch is
scored by one version from start to end. A version that fails is rejected with a
logged reason and a metric, and the one before keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from models.checkpoint import CheckpointError, load_checkpoint
from models.serving import canary_check
from models.train import SequenceRecommender
from schemas.errors import RecommenderError
from streams import metrics

log = logging.getLogger(__name__)


class ModelRejected(RecommenderError):
    """A published version that must not serve; ``kind`` labels the metric."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Served:
    """One loaded, checked version and its item vocabulary."""

    name: str
    version: str
    model: SequenceRecommender
    metrics: dict[str, float]
    index_of: dict[str, int] = field(default_factory=dict)  # external item id -> model index
    # store index -> model index (0 = unknown to the model), grown as the store's
    # vocabulary grows; owned by the stream's scorer
    store_to_model: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    trend_read_s: float = -math.inf  # monotonic time the scorer last refreshed the trend
    _reasons: dict[str, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.index_of:
            self.index_of = {item: i + 1 for i, item in enumerate(self.model.item_ids)}

    @property
    def item_ids(self) -> tuple[str, ...]:
        return self.model.item_ids

    def reasons(self, prefix: str) -> list[str]:
        """``prefix:<item id>`` for every model index (index 0: the bare prefix), built once:
        formatting them per candidate cost more than scoring."""
        cached = self._reasons.get(prefix)
        if cached is None:
            cached = self._reasons[prefix] = [prefix] + [f"{prefix}:{i}" for i in self.item_ids]
        return cached


def checkpoint_path(uri: str) -> Path:
    """A local path from a ``file://`` URI or a plain path.

    >>> str(checkpoint_path("file:///srv/registry/sasrec/v1.pt"))
    '/srv/registry/sasrec/v1.pt'
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("", None) or len(parsed.scheme) == 1:  # a Windows drive letter
        return Path(uri)
    raise ModelRejected("uri", f"unsupported checkpoint URI {uri!r}: expected file:// or a path")


def load_served(update: Mapping[str, Any], floors: Mapping[str, float] | None = None) -> Served:
    """Load and check the version a ModelUpdate record announces; raises ModelRejected."""
    name, version, uri = update["name"], update["version"], update["uri"]
    try:
        ckpt = load_checkpoint(checkpoint_path(uri))
        model = ckpt.build()
    except CheckpointError as exc:
        raise ModelRejected("load", f"{name} {version}: {exc}") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelRejected("load", f"{name} {version}: cannot build from {uri}: {exc!r}") from exc
    if not isinstance(model, SequenceRecommender):
        raise ModelRejected("kind", f"{name} {version}: {ckpt.kind} is not a sequence model")
    reason = canary_check(model)
    if reason is not None:
        raise ModelRejected("canary", f"{name} {version}: {reason}")
    for metric, floor in (floors or {}).items():
        value = ckpt.metrics.get(metric)
        if value is None or not value >= floor:
            raise ModelRejected(
                "metric", f"{name} {version}: {metric} {value} is below the floor {floor}"
            )
    return Served(name, version, model, dict(ckpt.metrics))


def user_bucket(uid: str) -> float:
    """A stable position in [0, 1) of a user, for canary and A/B fractions.

    >>> user_bucket("abc") == user_bucket("abc")
    True
    """
    digest = hashlib.blake2b(uid.encode(), digest_size=8, person=b"reco-canary").digest()
    return int.from_bytes(digest, "big") / 2**64


class ModelHolder:
    """The serving version, the one before it, and an optional canary.

    With ``canary_fraction`` > 0, a new version first serves that stable fraction of
    users, and becomes the version for everyone ``canary_seconds`` later.
    """

    def __init__(
        self,
        name: str,
        floors: Mapping[str, float] | None = None,
        canary_fraction: float = 0.0,
        canary_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.floors = dict(floors or {})
        self.canary_fraction = canary_fraction
        self.canary_seconds = canary_seconds
        self.clock = clock
        self.current: Served | None = None
        self.previous: Served | None = None
        self.canary: Served | None = None
        self._canary_since = 0.0
        self.rejected: list[tuple[str, str]] = []  # (version, reason), most recent last
        # swaps and rejections not yet added to the shared counters (the processor
        # flushes them with its own, so ops tools see every worker's)
        self.counts: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self.ready = asyncio.Event()  # set once a version serves

    def for_user(self, uid: str) -> Served | None:
        canary = self.canary
        if canary is not None and user_bucket(uid) < self.canary_fraction:
            return canary
        return self.current

    def versions(self) -> dict[str, str | None]:
        return {
            "current": self.current.version if self.current else None,
            "canary": self.canary.version if self.canary else None,
            "previous": self.previous.version if self.previous else None,
        }

    def take_counts(self) -> dict[str, int]:
        taken = {k: n for k, n in self.counts.items() if n}
        self.counts.clear()
        return taken

    def tick(self) -> None:
        """Promote a canary that has served long enough; called between micro-batches."""
        if self.canary is not None and self.clock() - self._canary_since >= self.canary_seconds:
            self._swap(self.canary)

    def _swap(self, served: Served) -> None:
        if self.current is not None and self.current.version != served.version:
            self.previous = self.current
        self.current, self.canary = served, None
        self.ready.set()
        metrics.MODEL_SWAPS.inc()
        self.counts["model_swaps"] += 1
        metrics.MODEL_LOADED_AT.set(time.time())
        metrics.MODEL.info({"name": served.name, "version": served.version})
        log.info("serving %s %s", served.name, served.version)

    def install(self, served: Served) -> None:
        """Swap in a checked version, as a canary first when one is configured."""
        if self.canary_fraction > 0 and self.current is not None:
            self.canary, self._canary_since = served, self.clock()
            log.info(
                "canary %s %s for %.0f%% of users",
                served.name,
                served.version,
                100 * self.canary_fraction,
            )
        else:
            self._swap(served)

    async def offer(self, update: Mapping[str, Any]) -> bool:
        """Load, check and install the announced version; False (and logged) if rejected."""
        if update.get("name") != self.name:
            return False
        version = str(update.get("version"))
        if version in (
            self.current.version if self.current else None,
            self.canary.version if self.canary else None,
        ):
            return True
        async with self._lock:  # one load at a time; the hot path never waits on it
            try:
                served = await asyncio.to_thread(load_served, update, self.floors)
            except ModelRejected as exc:
                self._reject(version, exc.kind, str(exc))
                return False
            except Exception as exc:
                self._reject(version, "error", f"{self.name} {version}: {exc!r}")
                return False
            self.install(served)
            return True

    def _reject(self, version: str, kind: str, reason: str) -> None:
        metrics.MODEL_REJECTED.labels(kind).inc()
        self.counts["model_rejected"] += 1
        self.rejected = [*self.rejected[-9:], (version, reason)]
        log.error("rejected model version %s: %s", version, reason)
