"""An A/B test on a real broker and Redis: two trained models, a salted split, the report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import redis

from models.abtest import assign
from models.data import from_dataset
from models.datasets import generate
from models.registry import Registry
from models.sasrec import SASRec, SASRecConfig
from models.split import leave_one_out
from schemas.codec import Codec
from streams import keys
from streams.announce import announce
from streams.evaluation import summarise
from streams.pseudonym import Pseudonymiser
from tests.streams.harness import Worker, consume, make_settings, publish_records, run, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_each_arm_is_served_by_its_model_and_the_report_compares_them(
    kafka_bootstrap: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    shop = generate(n_users=300, n_items=60, n_categories=4, events_per_user=(5, 10), seed=21)
    split = leave_one_out(from_dataset(shop))
    config = SASRecConfig(hidden=16, epochs=2, batch_size=64, progress=False, threads=1)
    control = SASRec(config).fit(split.train, split.valid)
    treatment = SASRec(SASRecConfig(**{**config.__dict__, "seed": 1})).fit(split.train, split.valid)
    registry = Registry(tmp_path / "registry")
    s = make_settings(
        kafka_bootstrap,
        redis_url,
        model_registry=str(registry.root),
        ab_treatment_model="sasrec-b",
        ab_treatment_share=0.3,
        ab_salt="exp-1",
    )
    v_control = registry.publish(control.to_checkpoint({"NDCG@10": 0.1}), s.model_name)
    v_treatment = registry.publish(treatment.to_checkpoint({"NDCG@10": 0.1}), "sasrec-b")
    run(announce(v_control, s))
    run(announce(v_treatment, s))
    publish_records(s, [("product", p["item_id"], p) for p in shop.products])
    events = [rec for kind, rec in shop.events if kind == "purchase"]
    worker = Worker(s, tmp_path / "worker.log")
    try:

        def both_loaded() -> bool:
            beats = [json.loads(b) for b in redis_client.hvals(keys.WORKERS)]
            return bool(beats) and all(
                b["models"]["current"] == v_control.version
                and b["treatment"]["current"] == v_treatment.version
                for b in beats
            )

        wait_for(both_loaded, 120, "both models loaded", worker)
        publish_records(s, [("purchase", r["user_id"], r) for r in events])
        recs = consume(s, s.topic_recommendations, len(events), timeout=180)
    finally:
        worker.stop()

    codec = Codec()
    pseudonym = Pseudonymiser(s.secret_bytes())
    served: Counter[tuple[str, str]] = Counter()
    for r in recs:
        d = codec.decode("Recommendation", r.value)
        arm = assign(pseudonym(d["user_id"]), "exp-1", 0.3)
        served[(arm, d["model_version"])] += 1
    assert set(served) == {
        ("control", v_control.version),
        ("treatment", v_treatment.version),
    }, served
    users = {r["user_id"] for r in events}
    treated = sum(assign(pseudonym(u), "exp-1", 0.3) == "treatment" for u in users)
    assert 0.2 < treated / len(users) < 0.4

    online = summarise(redis_client.hgetall(keys.EVALUATION))  # type: ignore[arg-type]
    assert online["arm"]["treatment"]["n"] > 0 and online["arm"]["control"]["n"] > 0
    assert set(online["version"]) == {v_control.version, v_treatment.version}

    out = tmp_path / "ab"
    shown = subprocess.run(
        [sys.executable, "-m", "streams.cli", "ab-report", "--out", str(out)],
        env=s.as_env(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "control" in shown.stdout and "treatment" in shown.stdout
    assert "conversion" in shown.stdout
    assert (out / "ab-report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
