"""Search quality on a window's search sessions: NDCG@10 and MRR of each ranking, Recall@100 of retrieval, per
segment, with bootstrap intervals over searches."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rec_pipeline.report import bootstrap_interval, resample_weights
from rec_pipeline.search.examples import Examples

NDCG_K, RECALL_K = 10, 100
METRICS = (f"ndcg@{NDCG_K}", "mrr", f"recall@{RECALL_K}")
BASELINES = ("lexical", "dense", "rrf")
HEAD_SHARE = 0.5  # head queries: the most frequent ones that make up this share of the searches before the window


def ranking_metrics(ranking: np.ndarray, target: dict[int, int]) -> tuple[float, float, float]:
    """NDCG@10 with gains 2^grade - 1, reciprocal rank of the first relevant item (0 past RECALL_K), and the share of
    the relevant items in the first RECALL_K, for one search."""
    ranking = ranking[:RECALL_K]
    grades = np.array([target.get(r, 0) for r in ranking.tolist()], np.float64)
    discounts = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    dcg = float(((2.0 ** grades[:NDCG_K] - 1) * discounts[: len(grades[:NDCG_K])]).sum())
    ideal = np.sort(np.array(list(target.values()), np.float64))[::-1][:NDCG_K]
    idcg = float(((2.0 ** ideal - 1) * discounts[: len(ideal)]).sum())
    hits = np.flatnonzero(grades > 0)
    rr = 1.0 / (hits[0] + 1) if len(hits) else 0.0
    return (dcg / idcg if idcg > 0 else 0.0), rr, len(hits) / len(target)


def rankings(examples: Examples, ranker_scores: dict[str, list[np.ndarray]]) -> dict[str, list[np.ndarray]]:
    """Each model's ranked rows per search: the two retrievers alone, their fusion, the candidate set in retrieval
    order (`retrieval`: its Recall@100 is the ranker's ceiling), and each ranker's order of the candidates."""
    out = {"lexical": examples.lexical, "dense": examples.dense, "rrf": examples.fused, "retrieval": examples.candidates}
    for name, scores in ranker_scores.items():
        out[name] = [c[np.argsort(-s, kind="stable")] for c, s in zip(examples.candidates, scores)]
    return out


def split_scores(examples: Examples, scores: np.ndarray) -> list[np.ndarray]:
    offsets = examples.offsets()
    return [scores[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


def head_queries(earlier_queries: pd.Series) -> set[str]:
    counts = earlier_queries.value_counts()
    if counts.empty:
        return set()
    covered = counts.cumsum() / counts.sum()
    return set(counts.index[: int(np.searchsorted(covered.to_numpy(), HEAD_SHARE) + 1)])


def segments(examples: Examples, cold_rows: set[int], new_users: set[str], head: set[str]) -> dict[str, tuple[np.ndarray, list[dict[int, int]]]]:
    """Segment -> (which searches, their targets). `cold_items` keeps only the cold targets of searches that have one;
    `with_history` is the shoppers the personal features can speak for."""
    sessions = examples.sessions
    every = np.ones(len(sessions), bool)
    cold_targets = [{r: g for r, g in t.items() if r in cold_rows} for t in examples.targets]
    return {
        "all": (every, examples.targets),
        "with_history": (examples.history_lengths > 0, examples.targets),
        "new_users": (sessions["user_id"].isin(new_users).to_numpy(), examples.targets),
        "cold_items": (np.array([bool(t) for t in cold_targets]), cold_targets),
        "head_queries": (sessions["query"].isin(head).to_numpy(), examples.targets),
        "tail_queries": (~sessions["query"].isin(head).to_numpy(), examples.targets),
    }


def search_report(examples: Examples, ranked: dict[str, list[np.ndarray]], segment_map: dict, n_resamples: int = 1000,
                  seed: int = 0, level: float = 0.95) -> dict:
    """{"models": {model: {segment: {metric: value}}}, "intervals": ..., "searches": {segment: n}}."""
    models, intervals, counts = {}, {}, {}
    for segment, (mask, targets) in segment_map.items():
        picked = np.flatnonzero(mask)
        counts[segment] = int(len(picked))
        weights = resample_weights(len(picked), n_resamples, seed)
        for name, lists in ranked.items():
            values = np.array([ranking_metrics(lists[i], targets[i]) for i in picked]).reshape(-1, len(METRICS))
            for m, metric in enumerate(METRICS):
                column = values[:, m]
                models.setdefault(name, {}).setdefault(segment, {})[metric] = round(float(column.mean()), 4) if len(column) else float("nan")
                lo, hi = bootstrap_interval(column, weights, level)
                intervals.setdefault(name, {}).setdefault(segment, {})[metric] = [round(lo, 4), round(hi, 4)]
    return {"models": models, "intervals": intervals, "searches": counts}


def ratios(report: dict, model: str = "search_ranker", ablation: str = "search_ranker_without_personal") -> dict:
    overall = report["models"]
    best = max(BASELINES, key=lambda b: overall[b]["all"][f"ndcg@{NDCG_K}"])
    base = overall[best]["all"][f"ndcg@{NDCG_K}"]
    personal = overall[ablation]["with_history"][f"ndcg@{NDCG_K}"]
    return {
        "best_baseline": best,
        f"search_ranker_over_best_baseline_ndcg@{NDCG_K}": round(overall[model]["all"][f"ndcg@{NDCG_K}"] / base, 3) if base > 0 else None,
        f"personal_over_without_personal_ndcg@{NDCG_K}_with_history": round(overall[model]["with_history"][f"ndcg@{NDCG_K}"] / personal, 3) if personal > 0 else None,
    }


def paired_difference(examples: Examples, ranked: dict[str, list[np.ndarray]], model: str, other: str, segment: str,
                      segment_map: dict, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """NDCG@10 of `model` minus `other` search by search on one segment: the mean and its bootstrap interval. Paired,
    so the interval is about the difference itself, not two overlapping means."""
    mask, targets = segment_map[segment]
    picked = np.flatnonzero(mask)
    diff = np.array([ranking_metrics(ranked[model][i], targets[i])[0] - ranking_metrics(ranked[other][i], targets[i])[0] for i in picked])
    lo, hi = bootstrap_interval(diff, resample_weights(len(picked), n_resamples, seed), level)
    return {"models": [model, other], "segment": segment, "metric": f"ndcg@{NDCG_K}", "searches": int(len(picked)),
            "mean_difference": round(float(diff.mean()), 4) if len(diff) else float("nan"), "interval": [round(lo, 4), round(hi, 4)]}
