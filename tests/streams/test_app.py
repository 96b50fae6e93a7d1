"""The worker's Faust app, built without a broker."""

from __future__ import annotations

import asyncio

from streams.settings import Settings
from streams.worker import create_app


def test_worker_consumer_uses_the_configured_fetch_wait() -> None:
    # Faust hard-codes a 1.5 s fetch wait; the worker's transport overrides it. This
    # fails if a Faust upgrade renames what the override hooks into.
    settings = Settings(pseudonym_secret="k", fetch_max_wait_ms=7)
    app = create_app(settings, "127.0.0.1:9", "redis://127.0.0.1:9/0")

    async def build() -> int:
        thread = app.consumer._thread  # type: ignore[attr-defined]
        consumer = thread._create_worker_consumer(app.transport)
        try:
            return int(consumer._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    assert asyncio.run(build()) == 7


def test_agents_subscribe_to_the_configured_topics() -> None:
    settings = Settings(pseudonym_secret="k").isolated("t")
    app = create_app(settings, "127.0.0.1:9", "redis://127.0.0.1:9/0")
    topics = {t for agent in app.agents.values() for t in agent.channel.topics}
    assert topics == {"t-purchases", "t-reviews", "t-catalog", "t-preferences"}
