"""What every benchmark needs: isolated settings, child processes, input, a machine line."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
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
from urllib.parse import urlsplit

from pydantic import SecretStr
from redis import asyncio as aioredis

from schemas.codec import Codec
from schemas.errors import RecommenderError
from streams.embedded import EmbeddedStack
from streams.replay import publish
from streams.settings import Settings
from streams.topics import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def write_results(name: str, results: Mapping[str, Any], directory: Path = RESULTS) -> Path:
    """A benchmark's flat figures as ``<directory>/<name>.json``; returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def batches_main(
    name: str,
    doc: str,
    run: Callable[[list[int], int], Mapping[str, Any]],
    users: list[int],
    repeats: int,
) -> None:
    """Command line of a benchmark that times batches of ``--users`` users, best of
    ``--repeats``: runs it, writes its figures and prints them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=users)
    parser.add_argument("--repeats", type=int, default=repeats)
    args = parser.parse_args()
    result = run(args.users, args.repeats)
    write_results(name, result)
    print(json.dumps(result, indent=2))


def settings_from_env() -> Settings:
    # Settings reads the environment in __init__; spelled this way because mypy, without
    # pydantic's plugin, takes every field for a required argument.
    return Settings(**{})


def fresh_settings(base: Settings, tag: str) -> Settings:
    """``base`` with topics, consumer group and pseudonym key of its own.

    A new pseudonym key gives every run its own per-user Redis keys, so one run's
    histories (and duplicate detection) never leak into the next.
    """
    isolated = base.isolated(f"bench-{tag}")
    return isolated.model_copy(update={"pseudonym_secret": SecretStr(secrets.token_hex(16))})


def tag(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:8]}"


async def create_topics(settings: Settings) -> None:
    """Every topic of ``settings``, as a worker would create them before it starts."""
    await ensure_topics(
        settings.kafka_bootstrap_servers or "",
        settings.topic_partitions(),
        settings.replication_factor,
    )


Encoded = list[tuple[str, bytes, bytes]]  # event id, key, Avro value


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
    except (OSError, subprocess.SubprocessError, RecommenderError):
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
    url = urlsplit(stack.redis_url)
    # Host and port only: a Redis URL may carry a password.
    where = "embedded" if stack.redis is not None else f"at {url.hostname}:{url.port or 6379}"
    return f"{cpu_description()}, {broker}, redis {info.get('redis_version', '?')} {where}"


def met(flag: bool) -> str:
    """A target's verdict as a benchmark table shows it."""
    return "yes" if flag else "**no**"


def header(machine: str) -> dict[str, Any]:
    """What every result file starts with: date, machine, and the load average (anything
    else running on a small machine moves every figure)."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "load_average_1m_at_start": os.getloadavg()[0],
    }


async def on_stack(base: Settings, stack: EmbeddedStack) -> tuple[Settings, dict[str, Any]]:
    """``base`` pointed at the stack's broker and Redis, and the result files' header."""
    located = {"kafka_bootstrap_servers": stack.bootstrap_servers, "redis_url": stack.redis_url}
    return base.model_copy(update=located), header(await machine(stack))
