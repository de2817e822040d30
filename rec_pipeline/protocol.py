"""The evaluation protocol end to end: one temporal split, tuned baselines and the ranker on the same candidates.

1. Validation: the same protocol with the test start moved back `validation_weeks`; it picks ALS's factors and
   regularisation from a small grid and the ranker's epoch count (early stopping on NDCG@20).
2. Final models, the ranker and the baselines alike, are fit on everything before the test start and scored on the test
   window: overall (every candidate) and cold-only (users with a cold target, cold items ranked).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from rec_pipeline.evaluation import Split, als_scores, content_knn_scores, popularity_scores, temporal_split, tune_als
from rec_pipeline.metrics import evaluate
from rec_pipeline.ranker.model import RankerConfig, window_season
from rec_pipeline.ranker.train import TrainConfig, TrainResult, ranker_validation, score, split_histories, train_ranker

K = 20


@dataclass(frozen=True)
class ProtocolConfig:
    test_start: str  # ISO date: train before it, test from it to the end of the data
    validation_weeks: int = 4
    seed: int = 0
    threads: int = 0


def segment_metrics(scores: np.ndarray, split: Split) -> dict[str, float]:
    """NDCG/Recall/HitRate@20 and MRR overall, and NDCG/Recall@20 cold-only."""
    means, _ = evaluate(scores, split.candidates, split.targets, ks=(K,))
    cold_candidates, cold_targets = split.cold_only()
    cold, _ = evaluate(scores[split.cold_rows], cold_candidates, cold_targets, ks=(K,)) if len(split.cold_rows) else ({}, None)
    return {
        f"ndcg@{K}": means[f"ndcg@{K}"],
        f"recall@{K}": means[f"recall@{K}"],
        f"hitrate@{K}": means[f"hitrate@{K}"],
        "mrr": means["mrr"],
        f"cold_recall@{K}": cold.get(f"recall@{K}", float("nan")),
        f"cold_ndcg@{K}": cold.get(f"ndcg@{K}", float("nan")),
    }


def run_protocol(
    purchases: pd.DataFrame,
    catalog: pd.DataFrame,
    vectors: pd.DataFrame,
    config: ProtocolConfig,
    model_config: RankerConfig = RankerConfig(n_items=0),
    train_config: TrainConfig = TrainConfig(),
) -> dict:
    """`purchases` (user_id, item_id, ts), `catalog` (item_id, first_seen, ...), `vectors` indexed by item_id.

    Returns the figures per model plus what was chosen on validation and how long each part took.
    """
    started = time.perf_counter()
    train_config = replace(train_config, seed=config.seed, threads=config.threads)
    test_start = pd.Timestamp(config.test_start, tz="UTC")
    validation_start = test_start - pd.Timedelta(weeks=config.validation_weeks)
    end = purchases["ts"].max() + pd.Timedelta(seconds=1)

    validation = temporal_split(purchases, validation_start, end=test_start, catalog=catalog)
    als_params, als_grid = tune_als(validation, seed=config.seed, threads=config.threads)
    before_validation = purchases[purchases["ts"] < validation_start]
    tuning = train_ranker(
        before_validation, validation.item_ids, vectors, catalog, model_config, train_config,
        validation=ranker_validation(validation, before_validation, test_start, model_config.history),
    )
    tuned_at = time.perf_counter()

    split = temporal_split(purchases, test_start, catalog=catalog)
    before_test = purchases[purchases["ts"] < test_start]
    final: TrainResult = train_ranker(before_test, split.item_ids, vectors, catalog, model_config, train_config, epochs=tuning.best_epoch)
    ranker = score(final.model, split_histories(split, before_test, model_config.history), window_season(test_start, end))
    trained_at = time.perf_counter()
    item_vectors = vectors.loc[split.item_ids].to_numpy(np.float32)
    models = {
        "ranker": segment_metrics(ranker, split),
        "als": segment_metrics(als_scores(split, als_params, config.seed, config.threads), split),
        "content_knn": segment_metrics(content_knn_scores(split, item_vectors), split),
        "popularity": segment_metrics(popularity_scores(split), split),
    }
    return {
        "models": {name: {k: round(float(v), 4) for k, v in m.items()} for name, m in models.items()},
        "ratios": {
            "ranker_over_als_ndcg@20": round(models["ranker"]["ndcg@20"] / models["als"]["ndcg@20"], 3),
            "ranker_over_content_knn_cold_recall@20": round(models["ranker"]["cold_recall@20"] / models["content_knn"]["cold_recall@20"], 3),
        },
        "split": {
            "test_start": test_start.isoformat(),
            "validation_start": validation_start.isoformat(),
            "items": len(split.item_ids),
            "cold_items": int(split.cold_items.sum()),
            "test_users": len(split.test_rows),
            "cold_users": len(split.cold_rows),
        },
        "chosen_on_validation": {
            "als": asdict(als_params),
            "ranker_epochs": tuning.best_epoch,
            "ranker_validation_ndcg@20": round(max(e["val_ndcg@20"] for e in tuning.epochs), 4),
        },
        "ranker_training": {
            "examples": final.examples,
            "examples_per_s": round(final.examples_per_s),
            "tuning_seconds": round(tuned_at - started, 1),
            "final_fit_seconds": round(trained_at - tuned_at, 1),
        },
        "seed": config.seed,
        "seconds": round(time.perf_counter() - started, 1),
    }
