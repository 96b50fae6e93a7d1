"""Where a busy worker spends its time: py-spy samples of ``reco worker`` under load."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.clock import JOIN_TIMEOUT_S, STALL_TIMEOUT_S, OutputClock
from bench.common import (
    ROOT,
    Child,
    Encoded,
    create_topics,
    forget_faust_dir,
    fresh_settings,
    prepublish,
    tag,
    worker_command,
)
from streams.settings import Settings

RATE_HZ = 100
TOP = 15

# Package of a frame, by the path py-spy prints; first match wins.
_PACKAGES = (
    ("streams/", "streams (ours)"),
    ("schemas/", "schemas (ours)"),
    ("models/", "models (ours)"),
    ("faust/", "faust"),
    ("mode/", "mode"),
    ("aiokafka/", "aiokafka"),
    ("kafka/", "aiokafka"),
    ("redis/", "redis-py"),
    ("fastavro/", "fastavro"),
    ("numpy/", "numpy"),
    ("asyncio/", "asyncio"),
)


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.is_file() else shutil.which("py-spy")


def package(frame: str) -> str:
    """``"send (aiokafka/producer/producer.py)"`` -> ``"aiokafka"``."""
    where = frame.rsplit("(", 1)[-1]
    for marker, name in _PACKAGES:
        if marker in where:
            return name
    return "other (stdlib, C)"


def _entry_point(frame: str) -> bool:
    """Frames every sample of a worker passes through, which say nothing."""
    return "streams/cli.py" in frame or frame.startswith("run_worker ")


def summarise(raw: str, seconds: float) -> tuple[str, dict[str, float]]:
    """Self time per package and per function, inclusive time of our own functions."""
    leaf: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        leaf[frames[-1]] += n
        by_package[package(frames[-1])] += n
        for frame in set(frames):
            if package(frame).endswith("(ours)") and not _entry_point(frame):
                inclusive[frame] += n
    if not total:
        return "no samples\n", {}

    def pct(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    busy = total / (seconds * RATE_HZ)
    lines = [
        f"{total} samples at {RATE_HZ} Hz over {seconds:.0f}s: the worker was on CPU "
        f"{100 * busy:.0f}% of the time (idle samples excluded from the shares below)",
        "",
        "self time by package:",
        *(f"  {pct(n)}  {name}" for name, n in by_package.most_common()),
        "",
        f"self time, top {TOP} functions:",
        *(f"  {pct(n)}  {name}" for name, n in leaf.most_common(TOP)),
        "",
        f"inclusive time, top {TOP} of our functions:",
        *(f"  {pct(n)}  {name}" for name, n in inclusive.most_common(TOP)),
    ]
    figures = {"profile_worker_cpu_busy": round(busy, 3)}
    for name, n in by_package.most_common():
        key = name.split(" ")[0].replace("-", "_")
        figures[f"profile_self_share_{key}"] = round(n / total, 3)
    return "\n".join(lines) + "\n", figures


async def profile_worker(
    tool: str, base: Settings, events: Encoded, seconds: float, logs: Path, where: Path
) -> dict[str, Any]:
    """Sample a fresh worker for ``seconds`` while it works through pre-published events."""
    s = fresh_settings(base, tag("profile"))
    await create_topics(s)
    await prepublish(s, events)
    raw = logs / "worker.pyspy"
    try:
        async with OutputClock(s.kafka_bootstrap_servers or "", s.topic_recommendations) as clock:
            with Child(
                worker_command(), s.as_env(os.environ), logs / "profile-worker.log"
            ) as child:
                started = await clock.wait_for(
                    1, join_timeout=JOIN_TIMEOUT_S, stall_timeout=STALL_TIMEOUT_S, check=child.check
                )
                if not started:
                    raise RuntimeError(f"worker did not start; log:\n{child.tail()}")
                spy = await asyncio.create_subprocess_exec(
                    tool, "record", "--pid", str(child.pid), "--duration", str(int(seconds)),
                    "--rate", str(RATE_HZ), "--format", "raw", "--nolineno",
                    "--nonblocking", "--output", str(raw),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                _, err = await spy.communicate()
                if spy.returncode:
                    return {"profile": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
                behind = len(events) - clock.count
    finally:
        forget_faust_dir(s)
    text, figures = summarise(raw.read_text(), seconds)
    if behind <= 0:
        text = "warning: the worker ran out of input before sampling ended\n" + text
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(text)
    shown = where.relative_to(ROOT) if where.is_relative_to(ROOT) else where
    return {"profile": str(shown), **figures}
