"""The evaluation protocol and the baselines every model is compared with, on the same split and candidates.

Protocol (a global temporal split, never per-user leave-one-out, which leaks the future):
- train: purchases before the cut; test: purchases from the cut to the end of the data;
- test users: users with a train purchase and a test purchase of an item they had not bought before;
- candidates: every item known by the end of test, minus what the user bought in train;
- targets: the items bought in test, minus those bought in train;
- cold-only: for users with a cold target (an item with no train interaction), only cold items are ranked.
Tuning uses the same protocol with the cut moved back by the validation window; final models are fit on everything
before the cut.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits


@dataclass
class Split:
    item_ids: np.ndarray  # column index -> item id: every item known by the end of the test window
    user_ids: np.ndarray  # row index of `train` -> user id: every user with a train purchase
    train: sp.csr_matrix  # users x items, number of train purchase lines
    test_rows: np.ndarray  # rows of `train` that are test users
    candidates: np.ndarray  # test users x items, bool
    targets: list[np.ndarray]  # per test user, item columns
    cold_items: np.ndarray  # items, bool: no train interaction
    cut: pd.Timestamp

    @property
    def cold_rows(self) -> np.ndarray:
        """Test users (positions in test_rows) with at least one cold target."""
        return np.array([i for i, t in enumerate(self.targets) if self.cold_items[t].any()], dtype=np.int64)

    def cold_only(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Candidates and targets restricted to cold items, for the users with a cold target."""
        rows = self.cold_rows
        candidates = self.candidates[rows] & self.cold_items[None, :]
        return candidates, [t[self.cold_items[t]] for t in (self.targets[r] for r in rows)]


def temporal_split(
    purchases: pd.DataFrame, cut: str | pd.Timestamp, end: str | pd.Timestamp | None = None, catalog: pd.DataFrame | None = None
) -> Split:
    """The protocol's split of `purchases` (columns user_id, item_id, ts) at `cut`; test runs to `end` if given.

    `catalog` (item_id, first_seen) lists the items to rank: those first seen before `end`. An item is cold when it
    was first seen at or after the cut (its first interaction anywhere in the data, anonymous ones included) and has
    no train purchase. Without a catalog, the items are those purchased, and cold means no train purchase.
    """
    cut = pd.Timestamp(cut, tz="UTC") if pd.Timestamp(cut).tzinfo is None else pd.Timestamp(cut)
    data = purchases.dropna(subset=["user_id", "item_id"])
    if end is not None:
        end = pd.Timestamp(end, tz="UTC") if pd.Timestamp(end).tzinfo is None else pd.Timestamp(end)
        data = data[data["ts"] < end]
    train, test = data[data["ts"] < cut], data[data["ts"] >= cut]
    if train.empty or test.empty:
        raise ValueError(f"the cut {cut} leaves no train or no test purchases")

    if catalog is not None:
        known = catalog if end is None else catalog[catalog["first_seen"] < end]
        item_ids = np.array(sorted(known["item_id"]), dtype=object)
    else:
        item_ids = np.array(sorted(set(data["item_id"])), dtype=object)
    item_index = pd.Index(item_ids)
    train = train[train["item_id"].isin(item_index)]
    test = test[test["item_id"].isin(item_index)]
    user_ids = np.array(sorted(train["user_id"].unique()), dtype=object)
    user_index = pd.Index(user_ids)
    matrix = sp.csr_matrix(
        (np.ones(len(train), dtype=np.float32), (user_index.get_indexer(train["user_id"]), item_index.get_indexer(train["item_id"]))),
        shape=(len(user_ids), len(item_ids)),
    )
    matrix.sum_duplicates()

    bought = matrix > 0
    test = test[test["user_id"].isin(user_index)]
    rows = user_index.get_indexer(test["user_id"])
    cols = item_index.get_indexer(test["item_id"])
    new = ~np.asarray(bought[rows, cols]).ravel()
    pairs = pd.DataFrame({"row": rows[new], "col": cols[new]}).drop_duplicates()
    grouped = pairs.groupby("row")["col"].apply(lambda c: np.sort(c.to_numpy()))
    test_rows = grouped.index.to_numpy()
    candidates = ~bought[test_rows].toarray()
    cold_items = np.asarray(matrix.sum(axis=0)).ravel() == 0
    if catalog is not None:
        first_seen = catalog.set_index("item_id")["first_seen"].reindex(item_ids)
        cold_items &= (first_seen >= cut).to_numpy()
    return Split(item_ids, user_ids, matrix, test_rows, candidates, list(grouped.values), cold_items, cut)


# ---------------------------------------------------------------------------------------------------------------
# Baselines: each returns a (test users x items) score matrix for a split.


def popularity_scores(split: Split) -> np.ndarray:
    """Items ranked by how many users bought them in train."""
    buyers = np.asarray((split.train > 0).sum(axis=0), dtype=np.float64).ravel()
    return np.tile(buyers, (len(split.test_rows), 1))


def random_scores(split: Split, seed: int = 0) -> np.ndarray:
    """Uniform random scores: the floor every model must clear."""
    return np.random.default_rng(seed).random((len(split.test_rows), len(split.item_ids)))


def recent_popularity_scores(split: Split, purchases: pd.DataFrame, since: pd.Timestamp) -> np.ndarray:
    """Items ranked by how many users bought them from `since` to the cut; all-time train popularity breaks ties."""
    recent = purchases[(purchases["ts"] >= since) & (purchases["ts"] < split.cut)]
    buyers = recent.drop_duplicates(["user_id", "item_id"])["item_id"].value_counts()
    recent_buyers = buyers.reindex(split.item_ids, fill_value=0).to_numpy(np.float64)
    all_time = np.asarray((split.train > 0).sum(axis=0), dtype=np.float64).ravel()
    return np.tile(recent_buyers + all_time / (all_time.max() + 1), (len(split.test_rows), 1))


def content_knn_scores(split: Split, item_vectors: np.ndarray) -> np.ndarray:
    """Cosine between each item's text vector and the mean text vector of what the user bought in train."""
    bought = (split.train[split.test_rows] > 0).astype(np.float32)
    profiles = np.asarray(bought @ item_vectors)
    profiles /= np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
    return profiles @ item_vectors.T


@dataclass(frozen=True)
class ALSParams:
    factors: int = 64
    regularization: float = 0.1
    alpha: float = 1.0  # confidence of an observed purchase: 1 + alpha * weight
    weighting: Literal["raw", "bm25"] = "raw"  # raw: purchase-line counts; bm25: implicit's BM25 over items' buyers
    iterations: int = 15


def als_weights(train: sp.csr_matrix, weighting: str) -> sp.csr_matrix:
    """The users x items matrix ALS fits: counts, or BM25 with items as documents and users as terms (implicit's
    recipe: K1 100, B 0.8): a purchase weighs less the more items its buyer bought (idf) and the more often its item
    was bought (length norm)."""
    if weighting == "raw":
        return train.tocsr()
    if weighting == "bm25":
        from implicit.nearest_neighbours import bm25_weight

        return bm25_weight(train.T.tocsr(), K1=100, B=0.8).T.tocsr().astype(np.float32)
    raise ValueError(f"unknown ALS weighting {weighting!r}: raw or bm25")


def als_scores(split: Split, params: ALSParams, seed: int = 0, threads: int = 0) -> np.ndarray:
    """implicit's ALS on the weighted train purchases; user factors dotted with item factors."""
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit parallelises itself; OpenBLAS threads on top of its threads would oversubscribe the cores.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=seed,
            num_threads=threads,
        )
        model.fit(als_weights(split.train, params.weighting), show_progress=False)
    return np.asarray(model.user_factors[split.test_rows] @ model.item_factors.T)


# A coordinate search: factors x regularisation at the default alpha and weighting (6 fits), then alpha x weighting at
# the best of those (5 more). The full product is 36 fits; on Online Retail's validation window one fit with scoring
# takes about 1 s on 2 cores, and the search runs at every cut and in every eval_report.
ALS_SEARCH = (
    {"factors": (64, 128), "regularization": (0.1, 1.0, 10.0)},
    {"alpha": (0.5, 1.0, 4.0), "weighting": ("raw", "bm25")},
)


def tune_als(validation: Split, search=ALS_SEARCH, metric: str = "ndcg@20", seed: int = 0, threads: int = 0) -> tuple[ALSParams, list[dict]]:
    """The point with the best `metric` on the validation split, and every point tried. `search` is a sequence of
    stages, each a grid over some of ALSParams' fields; each stage varies its fields around the best point so far."""
    from itertools import product

    from rec_pipeline.metrics import evaluate

    best, tried, seen = ALSParams(), [], {}
    for stage in search:
        names = list(stage)
        for values in product(*(stage[n] for n in names)):
            params = replace(best, **dict(zip(names, values)))
            if params not in seen:
                means, _ = evaluate(als_scores(validation, params, seed, threads), validation.candidates, validation.targets, ks=(20,))
                seen[params] = means[metric]
                tried.append({**asdict(params), metric: means[metric]})
        best = max(seen, key=seen.get)
    return best, tried


def ease_weights(train: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE (Steck, 2019): the item x item matrix B minimising ||X - XB||^2 + lam ||B||^2 with diag(B) = 0, in closed
    form: P = (X'X + lam I)^-1, B = -P / diag(P), diag(B) = 0. X is who bought what in train (0/1)."""
    bought = (train > 0).astype(np.float64)
    gram = np.asarray((bought.T @ bought).todense())
    gram[np.diag_indices_from(gram)] += lam
    # The Gram matrix plus lam I is symmetric positive definite: a Cholesky inverse takes half the time of a general one.
    factor, info = lapack.dpotrf(gram, lower=True)
    precision, info2 = lapack.dpotri(factor, lower=True)
    if info or info2:
        raise np.linalg.LinAlgError(f"EASE: the Gram matrix plus {lam} I is not positive definite (LAPACK info {info or info2})")
    precision = np.tril(precision) + np.tril(precision, -1).T
    weights = precision / -np.diag(precision)
    weights[np.diag_indices_from(weights)] = 0.0
    return weights


def ease_scores(split: Split, lam: float) -> np.ndarray:
    """Each test user's train purchases (0/1) times EASE's item-item weights. Items without a train buyer score 0."""
    bought = (split.train[split.test_rows] > 0).astype(np.float64)
    return np.asarray(bought @ ease_weights(split.train, lam), dtype=np.float32)


EASE_LAMBDAS = (50.0, 200.0, 500.0, 1000.0, 2500.0)


def tune_ease(validation: Split, lambdas=EASE_LAMBDAS, metric: str = "ndcg@20") -> tuple[float, list[dict]]:
    """The L2 weight with the best `metric` on the validation split, and every weight's score."""
    from rec_pipeline.metrics import evaluate

    tried = []
    for lam in lambdas:
        means, _ = evaluate(ease_scores(validation, lam), validation.candidates, validation.targets, ks=(20,))
        tried.append({"lambda": lam, metric: means[metric]})
    best = max(range(len(lambdas)), key=lambda i: tried[i][metric])
    return float(lambdas[best]), tried
