"""What every benchmark needs: isolated settings, child processes, an output-topic clock."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, Self

from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import SecretStr
from redis import asyncio as aioredis

from schemas.codec import Codec
from streams.embedded import EmbeddedStack
from streams.replay import publish
from streams.settings import Settings
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

TOPIC_FIELDS = (
    "purchases",
    "reviews",
    "catalog",
    "preferences",
    "recommendations",
    "segments",
    "drift_alerts",
    "model_updates",
    "dead_letter",
)

# Tansu answers a fetch only when its max-wait expires, even with data waiting, so the
# measuring consumer asks with a short one to add at most this much to what it measures.
PROBE_FETCH_WAIT_MS = 10


def settings_from_env() -> Settings:
    # Settings reads the environment in __init__; spelled this way because mypy, without
    # pydantic's plugin, takes every field for a required argument.
    return Settings(**{})


def fresh_settings(base: Settings, tag: str) -> Settings:
    """``base`` with topics, consumer group and pseudonym key of its own.

    A new pseudonym key gives every run its own per-user Redis keys, so one run's
    histories (and duplicate detection) never leak into the next.
    """
    update: dict[str, Any] = {
        f"topic_{t}": f"bench-{tag}-{t.replace('_', '-')}" for t in TOPIC_FIELDS
    }
    update["app_id"] = f"bench-{tag}"
    update["pseudonym_secret"] = SecretStr(secrets.token_hex(16))
    return base.model_copy(update=update)


async def create_topics(settings: Settings, *names: str) -> None:
    wanted = settings.topic_partitions()
    if names:
        wanted = {n: settings.partitions for n in names}
    await ensure_topics(settings.kafka_bootstrap_servers or "", wanted, settings.replication_factor)


Encoded = list[tuple[str, bytes, bytes]]  # event id, key, Avro value


def tag(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


def encode(records: list[dict[str, Any]], codec: Codec) -> Encoded:
    return [(r["event_id"], r["user_id"].encode(), codec.encode("Purchase", r)) for r in records]


async def prepublish(s: Settings, events: Encoded) -> float:
    """Publish purchases with the replay tool before a measurement; returns its rate."""
    stats = await publish(
        s.kafka_bootstrap_servers or "",
        [("purchase", s.topic_purchases, key, value) for _, key, value in events],
        total=len(events),
        progress=False,
    )
    return stats.rate


def forget_faust_dir(s: Settings) -> None:
    """Remove the data directory create_app made for this run's app id."""
    shutil.rmtree(Path(tempfile.gettempdir()) / "reco-faust" / s.app_id, ignore_errors=True)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment a worker started with ``settings`` reads them back from."""
    env = dict(os.environ)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers or ""
    env["REDIS_URL"] = settings.redis_url or ""
    # The unprefixed names above would lose to prefixed ones inherited from the caller.
    env.pop("RECO_KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("RECO_REDIS_URL", None)
    env["RECO_APP_ID"] = settings.app_id
    if settings.pseudonym_secret is not None:
        env["RECO_PSEUDONYM_SECRET"] = settings.pseudonym_secret.get_secret_value()
    for t in TOPIC_FIELDS:
        env[f"RECO_TOPIC_{t.upper()}"] = getattr(settings, f"topic_{t}")
    return env


class Child:
    """A subprocess whose output goes to a log file; ``started`` is its perf_counter start."""

    def __init__(self, args: list[str], env: Mapping[str, str], log: Path) -> None:
        self.args = args
        self.log_path = log
        self._log: IO[bytes] = log.open("wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            args, env=dict(env), cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check(self) -> None:
        if self.proc.poll():
            raise RuntimeError(
                f"{' '.join(self.args)} exited with {self.proc.returncode}:\n{self.tail()}"
            )

    def tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def worker_command() -> list[str]:
    return [sys.executable, "-m", "streams.cli", "worker"]


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
    ) -> bool:
        """Until ``count`` records arrived; False when the first one or progress stalls."""
        start = time.perf_counter()
        seen, progress = self.count, start
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
        return True

    def rate_first_to_last(self) -> float:
        """Records after the first fetch over the time from first to last fetch."""
        if self.first is None or self.last is None or self.last <= self.first:
            return 0.0
        return (self.count - self.first_batch) / (self.last - self.first)


def cpu_description() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{cores} cores, {model}"


def tansu_version() -> str | None:
    from streams.embedded import tansu_binary

    try:
        out = subprocess.run(
            [tansu_binary(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.split()
    except (OSError, subprocess.SubprocessError, RuntimeError):
        return None
    return out[-1] if out else None


async def machine(stack: EmbeddedStack) -> str:
    """e.g. "2 cores, AMD EPYC, Tansu 0.6.0 embedded, redis 7.0.15"."""
    if stack.tansu is not None:
        broker = f"Tansu {tansu_version() or '?'} embedded"
    else:
        broker = f"Kafka at {stack.bootstrap_servers}"
    client = aioredis.from_url(stack.redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    where = "embedded" if stack.redis is not None else f"at {stack.redis_url}"
    return f"{cpu_description()}, {broker}, redis {info.get('redis_version', '?')} {where}"
