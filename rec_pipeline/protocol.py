"""The evaluation protocol end to end: at each cut, tuned baselines and the ranker on the same split and candidates.

Rolling origin: one cut is one verdict, and a cut that was also looked at while designing flatters whatever was
designed on it, so `rolling_origin` repeats the protocol at several cuts. At each cut:
1. Validation: the weeks before the cut (`validation_weeks`), with train before them and the catalog as it was known
   at their start. Every tuning decision is taken there: ALS's factors, regularisation, alpha and weighting, EASE's
   L2 weight, the ranker's epoch count (early stopping on NDCG@20).
2. Test: `test_weeks` from the cut (to the end of the data where it is None). Final models, the ranker and the
   baselines alike, are fit on everything before the cut with the catalog as known at the cut, and scored by
   segment (`rec_pipeline.report`): all, warm items, cold items, new users, with bootstrap intervals over users.
3. Headline ratios: the ranker over the best baseline of each segment, with paired bootstrap intervals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from rec_pipeline import report as rp
from rec_pipeline.evaluation import Split, temporal_split
from rec_pipeline.metrics import evaluate
from rec_pipeline.ranker.model import RankerConfig, window_season
from rec_pipeline.ranker.train import TrainConfig, TrainResult, ranker_validation, score, split_histories, train_ranker

# What the JSON line carries per model and segment (the report computes more).
REPORTED = ("ndcg@20", "recall@20", "hitrate@20", "mrr")

CatalogAt = Callable[[pd.Timestamp], tuple[pd.DataFrame, pd.DataFrame]]  # cut -> (catalog, vectors by item_id)
# (purchases before a cut, catalog at it) -> (vectors by item_id from an encoder fine-tuned on them, its record)
Finetune = Callable[[pd.DataFrame, pd.DataFrame], tuple[pd.DataFrame, dict]]


@dataclass(frozen=True)
class ProtocolConfig:
    cuts: tuple[str, ...]  # ISO dates: train before each, test from it
    validation_weeks: int = 4  # the window before each cut that every tuning decision is taken on
    test_weeks: int | None = None  # test window length; None: to the end of the data
    seed: int = 0
    threads: int = 0
    bootstrap_resamples: int = 1000


K = 20


def segment_metrics(scores: np.ndarray, split: Split) -> dict[str, float]:
    """NDCG/Recall/HitRate@20 and MRR overall, and NDCG/Recall@20 cold-only: what the ranker asset logs for its
    validation window."""
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


def _utc(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def evaluate_cut(
    purchases: pd.DataFrame, catalog_at: CatalogAt, cut, config: ProtocolConfig,
    model_config: RankerConfig = RankerConfig(n_items=0), train_config: TrainConfig = TrainConfig(),
    finetune: Finetune | None = None,
) -> dict:
    """The protocol at one cut. `purchases` (user_id, item_id, ts); `catalog_at(t)` the catalog (item_id, first_seen,
    ...) as known at t and its text vectors indexed by item_id. With `finetune`, the ranker and content-kNN take their
    text vectors from the encoder fine-tuned on what was bought before the validation start (tuning) and before the
    cut (final)."""
    started = time.perf_counter()
    train_config = replace(train_config, seed=config.seed, threads=config.threads)
    cut = _utc(cut)
    validation_start = cut - pd.Timedelta(weeks=config.validation_weeks)
    end = cut + pd.Timedelta(weeks=config.test_weeks) if config.test_weeks else purchases["ts"].max() + pd.Timedelta(seconds=1)

    tune_catalog, tune_vectors = catalog_at(validation_start)
    validation = temporal_split(purchases, validation_start, end=cut, catalog=tune_catalog)
    before_validation = purchases[purchases["ts"] < validation_start]
    encoders = {}
    if finetune:
        tune_vectors, encoders["tuning"] = finetune(before_validation, tune_catalog)
    tuning = train_ranker(
        before_validation, validation.item_ids, tune_vectors, tune_catalog, model_config, train_config,
        validation=ranker_validation(validation, before_validation, cut, model_config.history),
    )
    tuned_at = time.perf_counter()

    catalog, vectors = catalog_at(cut)
    split = temporal_split(purchases, cut, end=end, catalog=catalog)
    before = purchases[purchases["ts"] < cut]
    if finetune:
        vectors, encoders["final"] = finetune(before, catalog)
    final: TrainResult = train_ranker(before, split.item_ids, vectors, catalog, model_config, train_config, epochs=tuning.best_epoch)
    scores = {"ranker": score(final.model, split_histories(split, before, model_config.history), window_season(cut, end))}
    trained_at = time.perf_counter()
    # Baselines are tuned on the same validation split the ranker stopped on.
    baselines, chosen = rp.baseline_scores(
        split, validation, before, vectors.loc[split.item_ids].to_numpy(np.float32), validation_start, config.seed, config.threads
    )
    scores.update(baselines)

    first = purchases.groupby("user_id")["ts"].min()
    new_users = first.index[(first >= validation_start) & (first < cut)]
    report = rp.build_report(scores, rp.segment_views(split, new_users), rp.ReportConfig(bootstrap_resamples=config.bootstrap_resamples, seed=config.seed))
    return {
        "cut": cut.date().isoformat(),
        "models": {
            model: {segment: {m: round(figures["metrics"][m]["mean"], 4) for m in REPORTED} for segment, figures in by_segment.items()}
            for model, by_segment in report.figures.items()
        },
        "ratios": {name: {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for name, r in rp.headline_ratios(report).items()},
        "segments": report.segments,
        "split": {
            "validation_start": validation_start.date().isoformat(),
            "test_end": end.isoformat(),
            "items": len(split.item_ids),
            "cold_items": int(split.cold_items.sum()),
        },
        "chosen_on_validation": {**chosen, "ranker_epochs": tuning.best_epoch,
                                 "ranker_validation_ndcg@20": round(max(e["val_ndcg@20"] for e in tuning.epochs), 4)},
        **({"finetuned_encoder": encoders} if encoders else {}),
        "ranker_training": {"examples": final.examples, "examples_per_s": round(final.examples_per_s),
                            "tuning_seconds": round(tuned_at - started, 1), "final_fit_seconds": round(trained_at - tuned_at, 1)},
        "seconds": round(time.perf_counter() - started, 1),
    }


def rolling_origin(
    purchases: pd.DataFrame, catalog_at: CatalogAt, config: ProtocolConfig,
    model_config: RankerConfig = RankerConfig(n_items=0), train_config: TrainConfig = TrainConfig(),
    progress: Callable[[str], None] = lambda line: None, finetune: Finetune | None = None,
) -> dict:
    """`evaluate_cut` at every cut of `config`, then the mean of each ratio and of each model's figures over them.
    `progress` hears one line per cut as it ends."""
    if not config.cuts:
        raise ValueError("give at least one cut")
    cuts = []
    for number, cut in enumerate(config.cuts, 1):
        cuts.append(evaluate_cut(purchases, catalog_at, cut, config, model_config, train_config, finetune))
        done = cuts[-1]
        progress(f"cut {done['cut']} ({number}/{len(config.cuts)}) in {done['seconds']:.0f} s: "
                 + ", ".join(f"{name} {r['ratio']:.3f}x {r['baseline']}" for name, r in done["ratios"].items()))
    ratio_names = sorted({name for c in cuts for name in c["ratios"]})
    means = {
        "ratios": {name: round(float(np.mean([c["ratios"][name]["ratio"] for c in cuts if name in c["ratios"]])), 4) for name in ratio_names},
        "models": {
            model: {
                segment: {m: round(float(np.mean([c["models"][model][segment][m] for c in cuts if segment in c["models"][model]])), 4) for m in REPORTED}
                for segment in cuts[0]["models"][model]
            }
            for model in cuts[0]["models"]
        },
    }
    return {"cuts": cuts, "means": means, "validation_weeks": config.validation_weeks, "test_weeks": config.test_weeks, "seed": config.seed}
