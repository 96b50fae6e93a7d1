"""The worker's HTTP API, served by a real `reco worker` from the stream's own state."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from models.datasets import generate
from schemas.codec import Codec
from streams.metrics import REGISTRY
from streams.probes import free_port
from streams.serving.serve import BASELINE_VERSION, TRENDING_VERSION
from streams.settings import Settings
from streams.worker import create_app
from tests.streams.harness import Worker, consume, make_settings, publish_records, stat, wait_for


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def get_json(port: int, path: str) -> tuple[int, Any]:
    status, ctype, body = http_get(port, path)
    assert ctype.startswith("application/json"), (path, ctype, body[:200])
    return status, json.loads(body)


def recommendations_path(user_id: str, k: int | str | None = None) -> str:
    path = f"/users/{urllib.parse.quote(user_id, safe='')}/recommendations"
    return path if k is None else f"{path}?k={k}"


def web_is_up(port: int) -> bool:
    try:
        return http_get(port, "/health")[0] == 200
    except (urllib.error.URLError, OSError):
        return False


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.integration
@pytest.mark.slow
def test_api_answers_what_the_stream_emitted(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = free_port()
    # No caches, so nothing but the state itself decides either answer.
    s = make_settings(
        kafka_bootstrap,
        redis_url,
        partitions=1,
        web_enabled=True,
        web_port=port,
        product_cache_s=0,
        cooc_cache_s=0,
        segments_init_points=20,
        segments_init_min_events=1,
    )
    ds = generate(n_users=40, n_items=60, events_per_user=(3, 8), seed=11)
    events = [rec for kind, rec in ds.events if kind == "purchase"]
    publish_records(s, [("product", p["item_id"], p) for p in ds.products])
    publish_records(s, [("purchase", r["user_id"], r) for r in events])
    codec = Codec()
    worker = Worker(s, tmp_path / "worker.log")
    try:
        wait_for(lambda: stat(redis_client, "applied") == len(events), 60, "purchases", worker)
        wait_for(lambda: stat(redis_client, "products") == len(ds.products), 30, "catalog", worker)
        wait_for(lambda: web_is_up(port), 30, "the web server", worker)

        # A last purchase each for a few users, one at a time: nothing changes the state
        # between the recommendation it triggers and the request that follows it.
        per_user = Counter(r["user_id"] for r in events)
        users = [u for u, _ in per_user.most_common(3)]
        for n, user in enumerate(users):
            last = [r for r in events if r["user_id"] == user][-1]
            bought = {r["item_id"] for r in events if r["user_id"] == user}
            item = next(p["item_id"] for p in ds.products if p["item_id"] not in bought)
            event = {**last, "event_id": f"web-{n}", "item_id": item, "ts": last["ts"] + 1000}
            publish_records(s, [("purchase", user, event)])

            def emitted(records: list[Any], eid: str = event["event_id"]) -> bool:
                return any(
                    codec.decode("Recommendation", r.value)["cause_event_id"] == eid
                    for r in records
                )

            recs = consume(s, s.topic_recommendations, 0, 60, until=emitted)
            mine = [codec.decode("Recommendation", r.value) for r in recs if r.key == user.encode()]
            streamed = mine[-1]
            assert streamed["cause_event_id"] == event["event_id"]
            assert streamed["items"], user

            status, answer = get_json(port, recommendations_path(user))
            assert status == 200
            assert answer["user_id"] == user
            assert answer["model_version"] == streamed["model_version"] == BASELINE_VERSION
            assert answer["path"] == "baseline"
            assert answer["segment"] == streamed["segment"] is not None
            assert [i["item_id"] for i in answer["items"]] == [
                i["item_id"] for i in streamed["items"]
            ]
            assert [i["reason"] for i in answer["items"]] == [
                i["reason"] for i in streamed["items"]
            ]
            assert [i["score"] for i in answer["items"]] == pytest.approx(
                [i["score"] for i in streamed["items"]]
            )
            assert item not in {i["item_id"] for i in answer["items"]}
            status, top3 = get_json(port, recommendations_path(user, 3))
            assert status == 200
            assert top3["items"] == answer["items"][:3]

        # A user the stream never saw: trending items, not a 404.
        status, cold = get_json(port, recommendations_path("never-seen-1"))
        assert status == 200
        assert cold["model_version"] == TRENDING_VERSION and cold["path"] == "trending"
        assert 0 < len(cold["items"]) <= s.top_k
        assert {i["item_id"] for i in cold["items"]} <= {p["item_id"] for p in ds.products}
        assert all(i["reason"].startswith("trending") for i in cold["items"])
        assert get_json(port, recommendations_path("never-seen-2"))[1]["items"] == cold["items"]

        for bad in (0, "abc", -1, s.candidates + 1):
            status, body = get_json(port, recommendations_path(users[0], bad))
            assert status == 400 and "k must be" in body["error"], (bad, body)

        status, health = get_json(port, "/health")
        assert status == 200
        assert health["status"] == "ok" and health["redis"] is True
        assert health["model"] == {"current": None, "canary": None, "previous": None}
        assert health["rejected"] == []

        status, ctype, text = http_get(port, "/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        values = samples(text.decode())
        baseline = values[("reco_recommendations_total", frozenset({("path", "baseline")}))]
        # every purchase on the stream, the follow-ups, and the API's own answers
        assert baseline >= len(events) + 2 * len(users)
        api_calls = values[("reco_http_seconds_count", frozenset({("route", "recommendations")}))]
        assert api_calls == 2 * len(users) + 2  # answered; the four refused are not timed
        assert values[("reco_http_seconds_count", frozenset({("route", "health")}))] >= 2
        interactions = frozenset({("agent", "interactions")})
        assert values[("reco_events_total", interactions)] >= len(events) + len(users)
        latencies = values[("reco_event_latency_seconds_count", interactions)]
        assert latencies == values[("reco_events_total", interactions)]
        batches = values[("reco_batch_seconds_count", interactions)]
        assert values[("reco_batch_events_count", interactions)] == batches >= 1
        assert values[("reco_batch_events_sum", interactions)] == latencies
        busy = {
            stage: values[("reco_busy_seconds_total", interactions | {("stage", stage)})]
            for stage in ("processing", "delivery")
        }
        assert busy["processing"] > 0 and busy["delivery"] > 0
        # the two stages are what each batch's time is made of
        batch_s = values[("reco_batch_seconds_sum", interactions)]
        assert abs(busy["processing"] + busy["delivery"] - batch_s) < 1e-3
        worker.assert_alive()
    finally:
        worker.stop()


def test_redis_down_gives_503_not_a_crash() -> None:
    # A real Redis client against a port nothing listens on: connection refused.
    s = Settings(pseudonym_secret="k", web_enabled=True)
    app = create_app(s, "127.0.0.1:9", f"redis://127.0.0.1:{free_port()}/0")

    async def calls() -> list[tuple[int, Any]]:
        out = []
        # web_app belongs to faust's aiohttp driver, not to its abstract Web
        server = TestServer(app.web.web_app)  # type: ignore[attr-defined]
        async with TestClient(server) as client:
            for path in ("/health", "/users/u1/recommendations", "/users/u1/recommendations"):
                resp = await client.get(path)
                out.append((resp.status, await resp.json()))
        return out

    health, first, again = asyncio.run(calls())
    assert health == (
        503,
        {
            "status": "unavailable",
            "redis": False,
            "model": {"current": None, "canary": None, "previous": None},
            "rejected": [],
        },
    )
    assert first[0] == again[0] == 503
    assert "error" in first[1]


@pytest.mark.integration
def test_requests_beyond_the_bound_get_503_at_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    s = Settings(pseudonym_secret="k", web_enabled=True, web_max_in_flight=1)
    app = create_app(s, "127.0.0.1:9", redis_url)
    shed = REGISTRY.get_sample_value("reco_http_shed_total") or 0.0
    timed_key = ("reco_http_seconds_count", {"route": "recommendations"})
    timed = REGISTRY.get_sample_value(*timed_key) or 0.0

    async def calls() -> tuple[list[tuple[int, str | None, Any]], int]:
        server = TestServer(app.web.web_app)  # type: ignore[attr-defined]
        async with TestClient(server) as client:

            async def get(user: str) -> tuple[int, str | None, Any]:
                resp = await client.get(recommendations_path(user))
                return resp.status, resp.headers.get("Retry-After"), await resp.json()

            # Redis holds every command for a while: the one admitted request stays in
            # flight, so the others arrive while it is.
            redis_client.client_pause(1500, all=True)
            answers = list(await asyncio.gather(*(get(f"u{i}") for i in range(3))))
            after, _, _ = await get("u9")
        return answers, after

    answers, after = asyncio.run(calls())
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200, 503, 503], answers
    for status, retry_after, body in answers:
        if status == 503:
            assert retry_after == "1"
            assert body["error"].startswith("busy: 1 requests in flight")
    assert after == 200  # the bound counts requests in flight, not requests served
    assert REGISTRY.get_sample_value("reco_http_shed_total") == shed + 2
    assert REGISTRY.get_sample_value(*timed_key) == timed + 2  # the two answered, not the shed
