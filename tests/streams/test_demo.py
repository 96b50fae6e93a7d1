"""`reco demo` end to end, as `make demo` runs it, against the test broker and Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import redis

from schemas.codec import Codec
from schemas.errors import InvalidEventError, SchemaError, ServiceError
from schemas.validation import validate
from streams.demo import malformed_purchases
from streams.settings import Settings
from streams.topics import delete_topics


def _number(pattern: str, text: str) -> tuple[int, ...]:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in the output:\n{text[-3000:]}"
    return tuple(int(g.replace(",", "")) for g in match.groups())


def test_every_malformed_purchase_is_rejected() -> None:
    codec = Codec()
    for what, value in malformed_purchases(codec):
        with pytest.raises((SchemaError, InvalidEventError)):
            record = codec.decode("Purchase", value)
            validate("Purchase", record, now_ms=int(time.time() * 1000))
            pytest.fail(f"{what} was accepted")


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_demo_recommends_after_every_purchase_and_dead_letters_the_malformed(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis
) -> None:
    # Topics and consumer group of its own: the session's broker is shared with other tests.
    tag = uuid.uuid4().hex[:8]
    isolated = Settings(pseudonym_secret="unused").isolated(f"demo-{tag}")
    topics = {f.removeprefix("topic_"): getattr(isolated, f) for f in Settings.topic_fields()}
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECO_")}
    env |= {f"RECO_TOPIC_{t.upper()}": name for t, name in topics.items()}
    env |= {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REDIS_URL": redis_url,
        "RECO_APP_ID": f"reco-demo-test-{tag}",
    }
    command = [sys.executable, "-m", "streams.cli", "--loglevel", "warning", "demo"]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*command, "--dataset", "synthetic", "--limit", "2000", "--users", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=100,
        )
    finally:
        with contextlib.suppress(ServiceError):
            asyncio.run(delete_topics(kafka_bootstrap, topics.values()))
    elapsed = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-4000:]}\n{proc.stderr[-4000:]}"

    assert "stopped: every published purchase has a recommendation" in out
    recommended, purchases = _number(
        r"recommendations\s+([\d,]+) for ([\d,]+) purchases published", out
    )
    assert recommended == purchases == 2000
    (applied,) = _number(r"events applied\s+([\d,]+)", out)
    assert applied == 2000
    dead, sent = _number(r"dead letters\s+(\d+) \((\d+) malformed sent\)", out)
    assert dead == sent == len(malformed_purchases(Codec()))
    assert "quantity must be > 0" in out and "undecodable" in out
    # Followed users are shown with their purchase and titled recommendations.
    assert re.search(r"user u\d+ bought i\d+ Item \d+", out)
    assert re.search(r"1\. i\d+\s+Item \d+\s+\d\.\d{3}", out)
    (per_user,) = _number(r"Redis memory\s+([\d,]+) bytes per user", out)
    assert per_user > 0
    assert "RECO_PSEUDONYM_SECRET is not set" in out
    # The demo trains and announces SASRec; the followed users' lists show its version.
    version = re.search(r"model: sasrec (\S+), trained", out)
    assert version is not None, out[-3000:]
    assert f"({version.group(1)}, segment " in out
    # Segments, the online hit rate and drift are on screen too.
    assert re.search(r"segments\s+[\d,]+ changes", out)
    assert "online hit rate" in out and "drift alerts" in out
    assert elapsed < 90, f"demo took {elapsed:.0f}s"
