"""The worker's HTTP API: recommendations on demand, health and Prometheus metrics.

The views run in the worker's event loop on the Faust web server and answer from the
same Redis state, model holder and serving path as the stream, so a request made
right after a user's recommendation was emitted returns the same list.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from schemas.errors import InvalidEventError, ServiceError
from schemas.validation import check_id
from streams import metrics
from streams.processor import Processor
from streams.serving.holder import ModelHolder
from streams.serving.serve import reason_text
from streams.settings import Settings
from streams.status import consumer_lag, gather, render

log = logging.getLogger(__name__)

# What a Redis that is down or unreachable raises on the way to an answer.
UNAVAILABLE = (RedisError, OSError, ServiceError, asyncio.TimeoutError)
# A hung Redis must not hold requests (or a load balancer's health probe) forever.
REDIS_TIMEOUT_S = 5.0
LAG_TIMEOUT_S = 2.0  # the lag is read with a consumer of its own: skipped if slow
REJECTED_SHOWN = 5


def parse_k(raw: str | None, default: int, most: int) -> int:
    """The ``k`` query parameter; ValueError with a message for the client if bad.

    >>> parse_k(None, 10, 50), parse_k("3", 10, 50)
    (10, 3)
    >>> parse_k("0", 10, 50)
    Traceback (most recent call last):
    ...
    ValueError: k must be an integer from 1 to 50, got '0'
    """
    if raw is None:
        return min(default, most)
    try:
        k = int(raw)
    except ValueError:
        k = 0
    if not 1 <= k <= most:
        raise ValueError(f"k must be an integer from 1 to {most}, got {raw!r}")
    return k


def register_routes(
    app: faust.App,
    settings: Settings,
    processor: Callable[[], Awaitable[Processor]],
    holder: ModelHolder | None,
) -> None:
    """Add the API's views to ``app``'s web server."""

    def error(
        view: web.View, status: int, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        return view.json({"error": message}, status=status, headers=headers)

    in_flight = 0

    @app.page("/users/{user_id}/recommendations", name="recommendations")
    async def recommendations(view: web.View, request: web.Request, user_id: str) -> web.Response:
        nonlocal in_flight
        try:
            check_id("user_id", user_id)
            k = parse_k(request.query.get("k"), settings.top_k, settings.candidates)
        except (InvalidEventError, ValueError) as exc:
            return error(view, 400, str(exc))
        if in_flight >= settings.web_max_in_flight:
            # Not timed: a flood of instant refusals would pull the latency
            # histogram down just when the answered requests slow.
            metrics.HTTP_SHED.inc()
            return error(
                view,
                503,
                f"busy: {in_flight} requests in flight (RECO_WEB_MAX_IN_FLIGHT)",
                {"Retry-After": "1"},
            )
        in_flight += 1
        try:
            with metrics.HTTP_SECONDS.labels("recommendations").time():
                return await respond(view, user_id, k)
        finally:
            in_flight -= 1

    async def respond(view: web.View, user_id: str, k: int) -> web.Response:
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_S):
                proc = await processor()
                uid = proc.pseudonym(user_id)
                history = await proc.store.history(uid)
                [answer] = await proc.serving.recommend([uid], [history], k)
                segment = (await proc.serving.segments.segments_of([uid])).get(uid)
        except UNAVAILABLE as exc:
            log.warning("recommendations unavailable: %s", exc)
            return error(view, 503, "state store unavailable")
        body: dict[str, Any] = {
            "user_id": user_id,
            "model_version": answer.version,
            "path": answer.path,
            "segment": segment,
            "items": [
                {"item_id": r.item_id, "score": r.score, "reason": reason_text(r)}
                for r in answer.items
            ],
        }
        return view.json(body)

    @app.page("/health", name="health")
    async def health(view: web.View, request: web.Request) -> web.Response:
        with metrics.HTTP_SECONDS.labels("health").time():
            redis_ok = True
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    await (await processor()).store.ping()
            except UNAVAILABLE as exc:
                log.warning("health check: %s", exc)
                redis_ok = False
            body = {
                "status": "ok" if redis_ok else "unavailable",
                "redis": redis_ok,
                "model": holder.versions() if holder is not None else None,
                "rejected": [list(r) for r in holder.rejected[-REJECTED_SHOWN:]]
                if holder is not None
                else [],
            }
            return view.json(body, status=200 if redis_ok else 503)

    @app.page("/status", name="status")
    async def status(view: web.View, request: web.Request) -> web.Response:
        with metrics.HTTP_SECONDS.labels("status").time():
            lag = None
            if request.query.get("lag", "1") != "0":
                try:
                    lag = await asyncio.wait_for(
                        consumer_lag(settings, LAG_TIMEOUT_S), 2 * LAG_TIMEOUT_S
                    )
                except (*UNAVAILABLE, KafkaError) as exc:
                    log.warning("lag unavailable: %s", exc)
            try:
                async with asyncio.timeout(REDIS_TIMEOUT_S):
                    body = await gather(settings, (await processor()).store.redis, lag)
            except UNAVAILABLE as exc:
                log.warning("status unavailable: %s", exc)
                return error(view, 503, "state store unavailable")
            if request.query.get("format") == "text":
                return view.text(render(body) + "\n")
            return view.json(body)

    @app.page("/metrics", name="metrics")
    async def prometheus(view: web.View, request: web.Request) -> web.Response:
        with metrics.HTTP_SECONDS.labels("metrics").time():
            # aiohttp refuses a charset in its content_type argument, but not in a header.
            return view.bytes(
                generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )
