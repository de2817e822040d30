"""The evaluation protocol end to end: on synthetic data with a known answer, and `rec-pipeline evaluate` on the default data."""

import json

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.cli import main
from rec_pipeline.generate import GeneratorConfig, generate
from rec_pipeline.evaluation import EASE_LAMBDAS, ALSParams, als_scores, ease_scores, temporal_split
from rec_pipeline.metrics import evaluate
from rec_pipeline.protocol import REPORTED, ProtocolConfig, rolling_origin
from rec_pipeline.report import SEGMENTS
from rec_pipeline.ranker.train import TrainConfig

MODELS = {"ranker", "ease", "als", "content_knn", "recent_popularity", "popularity", "random"}


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
    config = ProtocolConfig(cuts=("2025-03-15",), validation_weeks=2, threads=1, bootstrap_resamples=200)
    report = rolling_origin(purchases, lambda cut: (catalog, vectors), config, train_config=TrainConfig(epochs=10, batch_size=64, lr=1e-2))
    [cut] = report["cuts"]
    # Everyone shops from the first day: there are no new users, and an empty segment has no figures.
    assert cut["segments"]["new_users"] == 0 and set(cut["segments"]) == set(SEGMENTS)
    assert set(cut["models"]) == MODELS and set(cut["models"]["ranker"]) == {"all", "warm_items", "cold_items"}
    assert all(set(figures) == set(REPORTED) for by_segment in cut["models"].values() for figures in by_segment.values())
    assert cut["split"]["cold_items"] == 20 and cut["segments"]["all"] > 80
    ranker, popularity = cut["models"]["ranker"], cut["models"]["popularity"]
    # Half the catalog is the wrong taste: knowing the taste must beat popularity by far, warm and cold.
    assert ranker["all"]["recall@20"] > popularity["all"]["recall@20"] + 0.2
    assert ranker["cold_items"]["recall@20"] > 0.9
    chosen = cut["chosen_on_validation"]
    assert 1 <= chosen["ranker_epochs"] <= 10 and chosen["als"]["factors"] in (64, 128) and chosen["ease_lambda"] in EASE_LAMBDAS

    # The baselines' figures, recomputed outside the protocol: the split at the cut, the ALS and EASE the report says
    # validation chose, scored by the metrics module on its own.
    split = temporal_split(purchases, "2025-03-15", end=purchases["ts"].max() + pd.Timedelta(seconds=1), catalog=catalog)
    als_ndcg = evaluate(als_scores(split, ALSParams(**chosen["als"]), 0, 1), split.candidates, split.targets, ks=(20,))[0]["ndcg@20"]
    ease_ndcg = evaluate(ease_scores(split, chosen["ease_lambda"]), split.candidates, split.targets, ks=(20,))[0]["ndcg@20"]
    assert cut["models"]["als"]["all"]["ndcg@20"] == pytest.approx(als_ndcg, abs=1e-4)
    assert cut["models"]["ease"]["all"]["ndcg@20"] == pytest.approx(ease_ndcg, abs=1e-4)
    assert cut["segments"]["all"] == len(split.test_rows) and cut["split"]["cold_items"] == int(split.cold_items.sum())
    # The headline ratio is over the best baseline of its segment, on that segment's metric.
    warm = cut["ratios"]["warm_ndcg@20"]
    best = max((m for m in cut["models"] if m != "ranker"), key=lambda m: cut["models"][m]["warm_items"]["ndcg@20"])
    assert warm["baseline"] == best and warm["lo"] <= warm["ratio"] <= warm["hi"]
    assert warm["ratio"] == pytest.approx(ranker["warm_items"]["ndcg@20"] / cut["models"][best]["warm_items"]["ndcg@20"], rel=2e-3)
    assert report["means"]["ratios"]["warm_ndcg@20"] == warm["ratio"]


def test_rolling_origin_tunes_and_tests_each_cut_on_its_own_windows():
    purchases, catalog, vectors = two_taste_shop()
    asked = []

    def catalog_at(cut):
        asked.append(cut.date().isoformat())
        return catalog, vectors

    config = ProtocolConfig(cuts=("2025-03-01", "2025-03-15"), validation_weeks=2, test_weeks=1, threads=1, bootstrap_resamples=100)
    report = rolling_origin(purchases, catalog_at, config, train_config=TrainConfig(epochs=3, batch_size=64, lr=1e-2))
    assert [c["cut"] for c in report["cuts"]] == ["2025-03-01", "2025-03-15"]
    # Tuning sees the catalog as known at the validation start, the final fit as known at the cut.
    assert asked == ["2025-02-15", "2025-03-01", "2025-03-01", "2025-03-15"]
    for cut in report["cuts"]:
        start = pd.Timestamp(cut["cut"], tz="UTC")
        assert cut["split"]["validation_start"] == (start - pd.Timedelta(weeks=2)).date().isoformat()
        assert pd.Timestamp(cut["split"]["test_end"]) == start + pd.Timedelta(weeks=1)
        window = purchases[(purchases["ts"] >= start) & (purchases["ts"] < start + pd.Timedelta(weeks=1))]
        assert cut["segments"]["all"] <= window["user_id"].nunique()
    # Cold items launch on 2025-03-15: the first cut has none, and a mean is over the cuts that have the segment.
    assert "cold_recall@20" not in report["cuts"][0]["ratios"] and "cold_recall@20" in report["cuts"][1]["ratios"]
    means = report["means"]["ratios"]
    for name in means:
        assert means[name] == pytest.approx(np.mean([c["ratios"][name]["ratio"] for c in report["cuts"] if name in c["ratios"]]), abs=1e-4)


def test_a_finetuned_encoder_learns_only_from_what_was_bought_before_each_fit():
    purchases, catalog, vectors = two_taste_shop()
    seen = []

    def finetune(before, catalog_then):  # records what each fine-tuning was given; the vectors stay the frozen ones
        seen.append((before["ts"].max(), len(catalog_then)))
        return vectors, {"fit": len(seen)}

    config = ProtocolConfig(cuts=("2025-03-15",), validation_weeks=2, test_weeks=1, threads=1, bootstrap_resamples=100)
    [cut] = rolling_origin(purchases, lambda cut: (catalog, vectors), config, train_config=TrainConfig(epochs=2, batch_size=64),
                           finetune=finetune)["cuts"]
    tuning_end, final_end = (pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-03-15", tz="UTC"))
    assert tuning_end - pd.Timedelta(days=2) < seen[0][0] < tuning_end and tuning_end < seen[1][0] < final_end
    assert cut["finetuned_encoder"] == {"tuning": {"fit": 1}, "final": {"fit": 2}}


def test_a_cut_outside_the_data_is_refused():
    purchases, catalog, vectors = two_taste_shop()
    with pytest.raises(ValueError, match="leaves no train or no test purchases"):
        rolling_origin(purchases, lambda cut: (catalog, vectors), ProtocolConfig(cuts=("2026-01-01",)))


def test_evaluate_on_the_default_data_prints_one_json_line_with_every_cut_model_and_segment(tmp_path, capsys):
    # The default data set's generator at a small size (four weeks, 12k events): the full default data took 380 s
    # here, most of CI's longest file. The full-size figures are `make demo`'s and BENCHMARKS.md's.
    generate(tmp_path / "raw", GeneratorConfig.small(n_events=12000, days=28))
    args = ["evaluate", "--data", "default", "--cuts", "2025-09-21", "--weeks", "1", "--validation-weeks", "1", "--json",
            "--data-dir", str(tmp_path), "--threads", "2"]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert report["dataset"] == "default" and report["seed"] == 0 and report["test_weeks"] == 1 and report["validation_weeks"] == 1
    [cut] = report["cuts"]
    assert cut["cut"] == "2025-09-21" and set(cut["models"]) == MODELS and cut["split"]["cold_items"] > 10
    models = cut["models"]
    # Cold items: only the text knows them; the ranker learns from it what content-kNN's cosine cannot.
    assert models["ranker"]["cold_items"]["recall@20"] > models["content_knn"]["cold_items"]["recall@20"] > models["random"]["cold_items"]["recall@20"]
    assert models["ranker"]["all"]["ndcg@20"] > 2 * models["popularity"]["all"]["ndcg@20"]
    assert {"warm_ndcg@20", "cold_recall@20", "all_ndcg@20", "new_users_ndcg@20"} <= set(cut["ratios"])
    assert cut["ratios"]["cold_recall@20"]["baseline"] == "content_knn"


def test_evaluate_names_the_missing_online_retail_file(tmp_path, capsys):
    missing = tmp_path / "online_retail.csv.gz"
    assert main(["evaluate", "--data", "online-retail", "--online-retail", str(missing), "--data-dir", str(tmp_path)]) == 2
    assert f"Online Retail not found at {missing}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--cuts", "2011-13-01"], "--cuts: '2011-13-01' is not an ISO date"),
        (["--cuts", "2011-09-01", "--weeks", "0"], "--weeks must be at least 1 (got 0)"),
        (["--finetune-top-layers", "7"], "--finetune-top-layers must be 0 to 6"),
    ],
)
def test_evaluate_refuses_a_bad_cut_or_window_before_loading_anything(tmp_path, capsys, flags, words):
    assert main(["evaluate", "--data", "online-retail", "--online-retail", str(tmp_path / "absent.csv.gz"), "--data-dir", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
