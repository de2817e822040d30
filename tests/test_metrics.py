"""Ranking metrics against brute-force references written from the definitions, one user at a time."""

import math

import numpy as np
import pytest

from rec_pipeline.metrics import evaluate, recall_curve, tie_orders, top_k


def reference_ranking(scores: np.ndarray, candidates: np.ndarray, order: np.ndarray) -> list[int]:
    """Candidates by score, highest first, ties in the user's tie order."""
    place = {int(item): rank for rank, item in enumerate(order)}
    return sorted(np.flatnonzero(candidates).tolist(), key=lambda i: (-float(scores[i]), place[i]))


def reference_metrics(scores, candidates, targets, k) -> dict[str, float]:
    rows = []
    kept = [u for u, t in enumerate(targets) if len(t)]  # evaluate ranks the users with a target, in order
    orders = tie_orders(len(kept), scores.shape[1])
    for row, u in enumerate(kept):
        s, c, t = scores[u], candidates[u], set(int(x) for x in targets[u])
        ranking = reference_ranking(s, c, orders[row])
        top = ranking[:k]
        hits = [item in t for item in top]
        dcg = sum(1 / math.log2(rank + 2) for rank, hit in enumerate(hits) if hit)
        idcg = sum(1 / math.log2(rank + 2) for rank in range(min(len(t), k)))
        first = next((rank for rank, item in enumerate(ranking) if item in t), None)
        rows.append(
            {
                f"recall@{k}": sum(hits) / len(t),
                f"ndcg@{k}": dcg / idcg,
                f"hitrate@{k}": float(any(hits)),
                "mrr": 0.0 if first is None else 1 / (first + 1),
            }
        )
    return {name: sum(r[name] for r in rows) / len(rows) for name in rows[0]}


@pytest.mark.parametrize("seed", range(6))
def test_metrics_match_the_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    users, items = 40, 30
    # Few distinct values, so ties are common and the tie-break is exercised.
    scores = rng.integers(0, 6, size=(users, items)).astype(np.float32)
    candidates = rng.random((users, items)) < 0.8
    targets = [rng.choice(items, size=rng.integers(0, 6), replace=False) for _ in range(users)]
    means, per_user = evaluate(scores, candidates, targets, ks=(1, 5, 10))
    for k in (1, 5, 10):
        expected = reference_metrics(scores, candidates, targets, k)
        for name, value in expected.items():
            assert means[name] == pytest.approx(value, abs=1e-12), (name, k)
    assert means["users"] == sum(len(t) > 0 for t in targets)


@pytest.mark.parametrize("seed", range(3))
def test_the_recall_curve_is_recall_at_every_k_of_the_reference(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=(30, 25)).astype(np.float32)
    candidates = rng.random((30, 25)) < 0.8
    targets = [rng.choice(25, size=rng.integers(0, 5), replace=False) for _ in range(30)]
    curve = recall_curve(scores, candidates, targets, max_k=12)
    assert curve.shape == (12,)
    for k in range(1, 13):
        assert curve[k - 1] == pytest.approx(reference_metrics(scores, candidates, targets, k)[f"recall@{k}"], abs=1e-12)


def test_a_perfect_and_a_worst_ranking():
    scores = np.array([[0.9, 0.8, 0.1, 0.0], [0.0, 0.1, 0.8, 0.9]])
    candidates = np.ones_like(scores, dtype=bool)
    targets = [np.array([0, 1]), np.array([0, 1])]
    means, per_user = evaluate(scores, candidates, targets, ks=(2,))
    assert per_user["ndcg@2"].tolist() == [1.0, 0.0]
    assert per_user["recall@2"].tolist() == [1.0, 0.0]
    assert per_user["mrr"].tolist() == [1.0, 1 / 3]


def test_excluded_items_are_never_recommended_and_coverage_counts_distinct_items():
    scores = np.array([[5.0, 4.0, 3.0], [5.0, 4.0, 3.0]])
    candidates = np.array([[False, True, True], [True, True, True]])
    top = top_k(scores, candidates, 2)
    assert top.tolist() == [[1, 2], [0, 1]]
    means, _ = evaluate(scores, candidates, [np.array([2]), np.array([2])], ks=(1,))
    assert means["coverage@1"] == pytest.approx(2 / 3)
    assert top_k(scores, np.array([[True, False, False], [False, False, False]]), 2).tolist() == [[0, -1], [-1, -1]]


def test_an_ndcg_that_other_libraries_got_wrong():
    # One relevant item of three at rank 2: IDCG uses min(|targets|, K) ideal positions, not K.
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]])
    means, _ = evaluate(scores, np.ones_like(scores, dtype=bool), [np.array([1, 3, 4])], ks=(2,))
    assert means["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert means["recall@2"] == pytest.approx(1 / 3)


def test_a_model_that_cannot_tell_items_apart_scores_like_a_random_one():
    """Constant scores: ties decide everything, and they must not favour low item indices (targets here are the
    lowest ones, where an index tie-break would put them first)."""
    rng = np.random.default_rng(0)
    users, items = 2000, 100
    targets = [np.array([rng.integers(10)]) for _ in range(users)]
    candidates = np.ones((users, items), dtype=bool)
    means, _ = evaluate(np.zeros((users, items)), candidates, targets, ks=(20,))
    assert 0.18 < means["recall@20"] < 0.22  # 20 of 100 items: 0.2 expected
    orders = tie_orders(3, items)
    assert all(sorted(o) == list(range(items)) for o in orders) and len({tuple(o) for o in orders}) == 3
