"""The evaluation protocol end to end: on synthetic data with a known answer, and `rec-pipeline evaluate` on the default data."""

import json

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.cli import main
from rec_pipeline.evaluation import ALSParams, als_scores, popularity_scores, temporal_split
from rec_pipeline.metrics import evaluate
from rec_pipeline.protocol import ProtocolConfig, run_protocol
from rec_pipeline.ranker.train import TrainConfig

MODEL_KEYS = {"ndcg@20", "recall@20", "hitrate@20", "mrr", "cold_recall@20", "cold_ndcg@20"}


def two_taste_shop(seed: int = 0):
    """Users of two tastes buy over three months from their half of 60 items; a third of the items appear late (cold)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-01-01", tz="UTC")
    items = np.array([f"i{k:02d}" for k in range(60)], dtype=object)
    taste = np.arange(60) % 2
    first_seen = np.where(np.arange(60) < 40, start, pd.Timestamp("2025-03-15", tz="UTC"))
    vectors = np.zeros((60, 8), np.float32)
    vectors[np.arange(60), taste] = 1.0
    vectors += rng.normal(0, 0.05, vectors.shape).astype(np.float32)
    rows = []
    for u in range(120):
        for _ in range(10):
            day = start + pd.Timedelta(days=float(rng.uniform(0, 90)))
            own = [i for i in range(60) if taste[i] == u % 2 and first_seen[i] <= day]
            rows.append((f"u{u}", items[rng.choice(own)], day))
    purchases = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    catalog = pd.DataFrame({"item_id": items, "first_seen": first_seen, "category": None, "price": 1.0 + np.arange(60)})
    return purchases, catalog, pd.DataFrame(vectors, index=items)


def test_the_protocol_scores_every_model_on_the_same_split_and_the_ranker_learns_the_tastes():
    purchases, catalog, vectors = two_taste_shop()
    report = run_protocol(purchases, catalog, vectors, ProtocolConfig(test_start="2025-03-15", validation_weeks=2, threads=1),
                          train_config=TrainConfig(epochs=10, batch_size=64, lr=1e-2))
    assert set(report["models"]) == {"ranker", "als", "content_knn", "popularity"}
    assert all(set(m) == MODEL_KEYS for m in report["models"].values())
    assert report["split"]["cold_items"] == 20 and report["split"]["test_users"] > 80
    ranker, popularity = report["models"]["ranker"], report["models"]["popularity"]
    # Half the catalog is the wrong taste: knowing the taste must beat popularity by far, warm and cold.
    assert ranker["recall@20"] > popularity["recall@20"] + 0.2
    assert ranker["cold_recall@20"] > 0.9
    assert 1 <= report["chosen_on_validation"]["ranker_epochs"] <= 10
    assert report["chosen_on_validation"]["als"]["factors"] in (32, 64, 128)

    # The baselines' figures, recomputed outside the protocol: the split at the test start, the ALS the report says
    # validation chose, popularity, each scored by the metrics module on its own.
    split = temporal_split(purchases, "2025-03-15", catalog=catalog)
    als = ALSParams(**report["chosen_on_validation"]["als"])
    als_ndcg = evaluate(als_scores(split, als, 0, 1), split.candidates, split.targets, ks=(20,))[0]["ndcg@20"]
    pop_recall = evaluate(popularity_scores(split), split.candidates, split.targets, ks=(20,))[0]["recall@20"]
    assert report["models"]["als"]["ndcg@20"] == pytest.approx(als_ndcg, abs=1e-4)
    assert popularity["recall@20"] == pytest.approx(pop_recall, abs=1e-4)
    assert report["split"]["test_users"] == len(split.test_rows) and report["split"]["cold_items"] == int(split.cold_items.sum())
    assert report["ratios"]["ranker_over_als_ndcg@20"] == pytest.approx(ranker["ndcg@20"] / als_ndcg, abs=2e-3)


def test_a_test_start_outside_the_data_is_refused():
    purchases, catalog, vectors = two_taste_shop()
    with pytest.raises(ValueError, match="leaves no train or no test purchases"):
        run_protocol(purchases, catalog, vectors, ProtocolConfig(test_start="2026-01-01"))


def test_evaluate_on_the_default_data_prints_one_json_line_where_the_ranker_beats_both_baselines(tmp_path, capsys):
    assert main(["evaluate", "--data", "default", "--json", "--data-dir", str(tmp_path), "--threads", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["dataset"] == "default" and report["seed"] == 0
    assert set(report["models"]) == {"ranker", "als", "content_knn", "popularity"}
    assert all(set(m) == MODEL_KEYS for m in report["models"].values())
    models = report["models"]
    # On their own ground: ALS's is NDCG@20 over every item, content-kNN's is Recall@20 among cold items.
    assert models["ranker"]["ndcg@20"] > 1.1 * models["als"]["ndcg@20"]
    assert models["ranker"]["cold_recall@20"] > 1.1 * models["content_knn"]["cold_recall@20"]
    assert models["ranker"]["ndcg@20"] > models["popularity"]["ndcg@20"]


def test_evaluate_names_the_missing_online_retail_file(tmp_path, capsys):
    missing = tmp_path / "online_retail.csv.gz"
    assert main(["evaluate", "--data", "online-retail", "--online-retail", str(missing), "--data-dir", str(tmp_path)]) == 2
    assert f"Online Retail not found at {missing}" in capsys.readouterr().err
