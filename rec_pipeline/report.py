"""The evaluation report's numbers: every model scored on the test split by segment, with bootstrap confidence
intervals, and the champion/challenger decision.

The split is the protocol's (`rec_pipeline.evaluation`): train is everything before the test cut, test after it.
Segments of its test users:
- all: every test user, every candidate ranked;
- warm_items: users with a target that had train interactions; only warm items are ranked;
- cold_items: users with a cold-start target; only cold-start items are ranked (the protocol's cold-only);
- new_users: test users whose first interaction came at or after the validation start (a history of days, not months).
Confidence intervals are 95% percentile bootstraps over users. Every model of a segment is resampled with the same
draws, so two models can be compared user by user: the gate bootstraps the per-user difference.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from rec_pipeline.evaluation import (
    Split, als_scores, content_knn_scores, ease_scores, popularity_scores, random_scores, recent_popularity_scores, tune_als,
    tune_ease,
)
from rec_pipeline.metrics import evaluate, recall_curve
from rec_pipeline.ranker.export import OnnxRanker
from rec_pipeline.ranker.train import split_histories

SEGMENTS = {
    "all": "every test user; every candidate item ranked",
    "warm_items": "users with a target seen in train; only items seen in train ranked",
    "cold_items": "users with a cold-start target; only cold-start items ranked",
    "new_users": "test users whose first interaction came at or after the validation start; every candidate ranked",
}
KS = (10, 20, 50)
METRICS = [f"{name}@{k}" for name in ("recall", "ndcg", "hitrate") for k in KS] + ["mrr"]
CURVE_K = 50
LEVEL = 0.95


@dataclass(frozen=True)
class ReportConfig:
    primary_metric: str = "ndcg@20"  # what the champion/challenger gate compares
    primary_segment: str = "all"  # all, warm_items, cold_items or new_users
    bootstrap_resamples: int = 1000
    seed: int = 0
    # Below this many users a segment's means and intervals are flagged as too small to mean much, and the gate will
    # not replace a champion on them: with 6 users one user moves NDCG@20 by 17% of its range.
    min_segment_users: int = 50


@dataclass
class SegmentView:
    rows: np.ndarray  # positions among the split's test users
    candidates: np.ndarray  # len(rows) x items, bool
    targets: list[np.ndarray]


def segment_views(split: Split, new_user_ids) -> dict[str, SegmentView]:
    warm = ~split.cold_items
    warm_rows = np.array([i for i, t in enumerate(split.targets) if warm[t].any()], dtype=np.int64)
    cold_candidates, cold_targets = split.cold_only()
    new_rows = np.flatnonzero(pd.Index(split.user_ids[split.test_rows]).isin(list(new_user_ids)))
    return {
        "all": SegmentView(np.arange(len(split.test_rows)), split.candidates, split.targets),
        "warm_items": SegmentView(warm_rows, split.candidates[warm_rows] & warm[None, :], [split.targets[r][warm[split.targets[r]]] for r in warm_rows]),
        "cold_items": SegmentView(split.cold_rows, cold_candidates, cold_targets),
        "new_users": SegmentView(new_rows, split.candidates[new_rows], [split.targets[r] for r in new_rows]),
    }


def onnx_scores(ranker: OnnxRanker, split: Split, purchases_before_cut: pd.DataFrame, season: np.ndarray) -> np.ndarray:
    """The served model's scores in the split's column order. Histories are the test users' purchases before the cut,
    in the model's own item rows; an item the model does not know scores lowest (it cannot recommend it)."""
    model_items = np.array(ranker.item_ids, dtype=object)
    histories = split_histories(split, purchases_before_cut, ranker.history_length, model_items)
    rows = pd.Index(model_items).get_indexer(split.item_ids) + 1
    known = rows > 0
    scores = np.full((len(split.test_rows), len(split.item_ids)), np.finfo(np.float32).min, np.float32)
    if known.any():  # a model trained on another catalog (a champion from another data set) may know none
        scores[:, known] = ranker.score_rows(histories, rows[known], season)
    return scores


BASELINES = ("ease", "als", "content_knn", "recent_popularity", "popularity", "random")


def baseline_scores(
    split: Split, validation: Split, purchases_before_cut: pd.DataFrame, item_vectors: np.ndarray, recent_since: pd.Timestamp,
    seed: int = 0, threads: int = 0,
) -> tuple[dict[str, np.ndarray], dict]:
    """Every baseline on the split's users and items, and what `validation` chose for them: EASE's L2 weight and
    ALS's factors, regularisation, alpha and weighting. `item_vectors` are the text vectors in the split's column
    order; recent popularity counts buyers since `recent_since`."""
    als_params, _ = tune_als(validation, seed=seed, threads=threads)
    ease_lambda, _ = tune_ease(validation)
    scores = {
        "ease": ease_scores(split, ease_lambda),
        "als": als_scores(split, als_params, seed, threads),
        "content_knn": content_knn_scores(split, item_vectors),
        "recent_popularity": recent_popularity_scores(split, purchases_before_cut, recent_since),
        "popularity": popularity_scores(split),
        "random": random_scores(split, seed),
    }
    return scores, {"ease_lambda": ease_lambda, "als": asdict(als_params)}


def resample_weights(n_users: int, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, n_users): how often each user is drawn in each bootstrap resample."""
    if n_users == 0:
        return np.zeros((n_resamples, 0))
    return np.random.default_rng(seed).multinomial(n_users, np.full(n_users, 1 / n_users), size=n_resamples).astype(np.float64)


def bootstrap_interval(values: np.ndarray, weights: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of the mean of `values` (one per user) over the resamples in `weights`."""
    if len(values) == 0:
        return float("nan"), float("nan")
    means = weights @ values.astype(np.float64) / len(values)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(lo), float(hi)


@dataclass
class Report:
    """Per model and segment: mean, 95% interval and per-user values of each metric, coverage, the Recall@K curve."""

    segments: dict[str, int]  # segment -> users in it
    figures: dict[str, dict[str, dict]]  # model -> segment -> {"metrics": {m: {mean, lo, hi}}, "coverage@k": .., "recall_curve": [..]}
    per_user: dict[tuple[str, str], dict[str, np.ndarray]]
    weights: dict[str, np.ndarray]  # segment -> bootstrap resample weights, shared by every model
    min_segment_users: int = ReportConfig.min_segment_users

    @property
    def small_segments(self) -> dict[str, int]:
        """Segments with test users, but fewer than `min_segment_users` of them."""
        return {name: n for name, n in self.segments.items() if 0 < n < self.min_segment_users}

    @property
    def warnings(self) -> list[str]:
        return [
            f"TOO FEW USERS: the {name} segment has {n:,} test users (fewer than {self.min_segment_users:,}); its figures "
            "and intervals mean little. Move the split's boundaries back or give it a larger test_share."
            for name, n in self.small_segments.items()
        ]

    def value(self, model: str, segment: str, metric: str) -> float:
        return self.figures[model][segment]["metrics"][metric]["mean"]

    def to_json(self) -> dict:
        return {
        "segments": {name: {"users": n, "description": SEGMENTS[name], "too_few_users": name in self.small_segments} for name, n in self.segments.items()},
        "min_segment_users": self.min_segment_users,
        "warnings": self.warnings,
        "models": self.figures,
    }


def build_report(scores: dict[str, np.ndarray], views: dict[str, SegmentView], config: ReportConfig = ReportConfig()) -> Report:
    """`scores`: model name -> (test users x items) scores, all on the same split."""
    weights = {name: resample_weights(len(view.rows), config.bootstrap_resamples, config.seed) for name, view in views.items()}
    figures: dict[str, dict[str, dict]] = {}
    per_user: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for model, matrix in scores.items():
        figures[model] = {}
        for name, view in views.items():
            if len(view.rows) == 0:
                continue
            segment_scores = matrix[view.rows]
            means, values = evaluate(segment_scores, view.candidates, view.targets, ks=KS)
            per_user[model, name] = values
            metrics = {}
            for metric in METRICS:
                lo, hi = bootstrap_interval(values[metric], weights[name])
                metrics[metric] = {"mean": means[metric], "lo": lo, "hi": hi}
            figures[model][name] = {
                "metrics": metrics,
                **{f"coverage@{k}": means[f"coverage@{k}"] for k in KS},
                "recall_curve": recall_curve(segment_scores, view.candidates, view.targets, CURVE_K).tolist(),
            }
    return Report({name: len(view.rows) for name, view in views.items()}, figures, per_user, weights, config.min_segment_users)


# The headline figures: the ranker over the best baseline of each segment, on that segment's own metric.
HEADLINES = {
    "warm_ndcg@20": ("warm_items", "ndcg@20"),
    "cold_recall@20": ("cold_items", "recall@20"),
    "all_ndcg@20": ("all", "ndcg@20"),
    "new_users_ndcg@20": ("new_users", "ndcg@20"),
}


def headline_ratios(report: Report, model: str = "ranker", baselines=BASELINES, level: float = LEVEL) -> dict[str, dict]:
    """Per headline, `model`'s mean over the best baseline's mean (the best on this very split, so the strongest
    rival there is), with a paired bootstrap interval: both means come from the same resampled users."""
    out = {}
    for name, (segment, metric) in HEADLINES.items():
        present = [b for b in baselines if (b, segment) in report.per_user]
        if (model, segment) not in report.per_user or not present:
            continue
        best = max(present, key=lambda b: report.value(b, segment, metric))
        ours, theirs = report.per_user[model, segment][metric], report.per_user[best, segment][metric]
        weights = report.weights[segment]
        with np.errstate(divide="ignore", invalid="ignore"):
            resampled = (weights @ ours) / (weights @ theirs)
        tail = (1 - level) / 2
        lo, hi = np.nanquantile(resampled, [tail, 1 - tail])
        out[name] = {
            "ratio": float(ours.mean() / theirs.mean()) if theirs.mean() > 0 else float("inf"),
            "lo": float(lo), "hi": float(hi), "baseline": best, "segment": segment, "metric": metric,
            "ours": float(ours.mean()), "theirs": float(theirs.mean()),
        }
    return out


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reason: str
    metric: str
    segment: str
    challenger: str  # registered version
    challenger_value: float
    champion: str | None = None
    champion_value: float | None = None
    difference: float | None = None
    interval: tuple[float, float] | None = None  # of the difference, challenger minus champion

    def as_dict(self) -> dict:
        return asdict(self)


def gate(
    report: Report, metric: str, segment: str, challenger: str, champion: str | None,
    challenger_model: str = "ranker", champion_model: str = "champion", level: float = LEVEL,
) -> GateDecision:
    """Promote the challenger only if it beats the champion on `metric` in `segment` by more than the confidence
    interval: the bootstrap interval of the per-user difference (same users, same resamples) must lie above zero."""
    if metric not in METRICS:
        raise ValueError(f"unknown gate metric {metric!r}; one of {', '.join(METRICS)}")
    if segment not in report.segments:
        raise ValueError(f"unknown gate segment {segment!r}; one of {', '.join(report.segments)}")
    if (challenger_model, segment) not in report.per_user:
        raise ValueError(f"the {segment} segment has no test users: nothing to decide on")
    mine = report.per_user[challenger_model, segment][metric]
    base = dict(metric=metric, segment=segment, challenger=challenger, challenger_value=float(mine.mean()))
    label = f"{metric} on {segment}"
    users = report.segments[segment]
    too_few = users < report.min_segment_users
    warning = f" WARNING: decided on {users:,} test users (fewer than {report.min_segment_users:,}), too few for the figure to mean much." if too_few else ""
    if champion is None:
        return GateDecision(True, f"no champion yet: version {challenger} becomes the champion ({label} {mine.mean():.4f}).{warning}", **base)
    if champion == challenger:
        return GateDecision(False, f"version {challenger} already is the champion", champion=champion, champion_value=float(mine.mean()), **base)
    theirs = report.per_user[champion_model, segment][metric]
    difference = mine - theirs
    lo, hi = bootstrap_interval(difference, report.weights[segment], level)
    figures = (
        f"{label}: challenger v{challenger} {mine.mean():.4f} vs champion v{champion} {theirs.mean():.4f}, "
        f"difference {difference.mean():+.4f}, {level:.0%} CI [{lo:+.4f}, {hi:+.4f}]"
    )
    if too_few:
        verdict, promote = f"not promoted: the {segment} segment has only {users:,} test users (fewer than {report.min_segment_users:,}), too few to replace the champion on; the champion stays", False
    elif lo > 0:
        verdict, promote = "promoted: the challenger is better by more than the confidence interval", True
    elif hi < 0:
        verdict, promote = "not promoted: the challenger is worse (the whole interval lies below zero); the champion stays", False
    else:
        verdict, promote = "not promoted: the difference lies within the confidence interval (a tie); the champion stays", False
    return GateDecision(
        promote, f"{verdict}. {figures}", champion=champion, champion_value=float(theirs.mean()),
        difference=float(difference.mean()), interval=(lo, hi), **base,
    )
