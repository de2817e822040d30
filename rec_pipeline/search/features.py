"""Retrieval (lexical ∪ dense ∪ the popular items of the query's category, fused by reciprocal rank) and the
features the search ranker scores candidates on.

The third list is there for recall: a shopper who searches "candle" goes on to open candles the words of the query
do not single out, chosen by popularity as much as by text. Lexical and dense fused put 0.82 of what followed a
search in their first 100 (the default data's validation window); with the category's popular items, 0.92.

One code path for training, evaluation and the service: each takes a query, its vector, the shopper's history before
the search and the catalog as it stood then, and gets the same candidates and the same feature columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rec_pipeline.search.index import SearchIndex

SECONDS_PER_DAY = 86_400.0
NOT_RETRIEVED = 1_000.0  # the rank a candidate gets in a list that did not return it

QUERY_FEATURES = (
    "lexical_score",  # BM25 from tantivy (0: not a lexical hit)
    "lexical_rank",
    "dense_cosine",  # query . item on the same encoder's unit vectors
    "dense_rank",
    "popular_rank",  # rank among the listed items of the query's category by popularity
    "rrf",  # the fused retrieval score the candidate set was cut on
    "query_category_share",  # share of the query's best lexical hits in the candidate's category
)
ITEM_FEATURES = (
    "popularity",  # log(1 + positive events in the POPULARITY_DAYS before the window)
    "age_days",  # days since the item was first listed: recency
    "log_price",
)
PERSONAL_FEATURES = (
    "recommender_score",  # the recommender's user-item score from the shopper's history (0 without one)
    "price_gap",  # the item's price standing in its category minus the shopper's usual one (their history's mean)
    "abs_price_gap",
    "history_category_share",  # share of the shopper's history in the candidate's category
    "history_length",  # log(1 + items); 0 for a new shopper
)
FEATURES = QUERY_FEATURES + ITEM_FEATURES + PERSONAL_FEATURES
POPULARITY_DAYS = 28
# Features are rounded to this many decimals. A tree threshold falls midway between two training values, and ONNX's
# TreeEnsemble holds thresholds in float32: an unrounded value next to a threshold can land on the other side of
# its float32 rounding, and a score moves by a whole leaf (seen: 0.11 on the default data). On a 0.001 grid the
# midpoints sit far further from every value than float32's error on numbers up to the thousands.
FEATURE_DECIMALS = 3
# A shopper's usual price standing is the mean over their history shrunk towards the category norm (0) as if by this
# many items at it: a two-item history says little. Validation holdout NDCG@10 of the personal model in two fits
# (this checkout's demo and a fresh clone's): no shrinkage 0.5465 / 0.5381, 2 items 0.5451 / 0.5462, 5 items
# 0.5414 / 0.5368; the model without personal features 0.5373 in both.
PRICE_PRIOR_ITEMS = 2.0


@dataclass(frozen=True)
class RetrievalConfig:
    # Hits asked of each list before the listing filter and the fusion. Chosen on the default data's validation
    # window: 200 each gives retrieval Recall@100 0.918 and the ranker's holdout NDCG@10 0.546; 100 each 0.925 and
    # 0.530. Both clear 0.9 recall, so the ranker's NDCG decides.
    lexical_depth: int = 200
    dense_depth: int = 200
    popular_depth: int = 200
    candidates: int = 100  # what the ranker sees, and the k of retrieval recall
    rrf_k: float = 60.0  # reciprocal-rank fusion constant (Cormack et al. 2009)
    category_hits: int = 10  # lexical hits (dense ones for a query without) that say which category a query is about


@dataclass
class ItemTable:
    """Per index row: what the features read of an item."""

    vectors: np.ndarray  # (rows, dim) unit text vectors, the dense index's
    category: np.ndarray  # (rows,) int codes, -1 unknown
    log_price: np.ndarray  # (rows,) NaN unknown
    first_seen: np.ndarray  # (rows,) epoch seconds
    popularity: np.ndarray  # (rows,) log1p counts
    price_mean: np.ndarray  # (categories,) mean and standard deviation of log price in each category
    price_sd: np.ndarray

    def __post_init__(self) -> None:
        # Where an item's price stands in its category, in standard deviations: a shopper's usual band is the mean
        # of this over what they bought, so "pricey for a candle" and "pricey for a coat" count alike.
        known = self.category >= 0
        mean = np.where(known, self.price_mean[np.maximum(self.category, 0)] if len(self.price_mean) else np.nan, np.nan)
        sd = np.where(known, self.price_sd[np.maximum(self.category, 0)] if len(self.price_sd) else 0.0, 0.0)
        self.price_z = np.where(sd > 0, (self.log_price - mean) / np.where(sd > 0, sd, 1.0), np.nan)
        # Per category, its rows by popularity (most first; ties by row): the third retrieval list.
        order = np.lexsort((np.arange(len(self.category)), -self.popularity, self.category))
        bounds = np.flatnonzero(np.r_[True, np.diff(self.category[order]) != 0, True])
        self.by_category = {int(self.category[order[a]]): order[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a}

    @classmethod
    def build(cls, item_ids: list[str], catalog: pd.DataFrame, vectors: np.ndarray, interactions: pd.DataFrame,
              as_of: pd.Timestamp, categories: list[str] | None = None) -> ItemTable:
        rows = catalog.drop_duplicates("item_id", keep="last").set_index("item_id").reindex(item_ids)
        categories = categories if categories is not None else sorted(rows["category"].dropna().astype(str).unique())
        category, log_price, first_seen = item_columns(rows, categories, unknown_time=0.0)
        frame = pd.DataFrame({"category": category, "log_price": log_price})
        stats = frame[frame["category"] >= 0].groupby("category")["log_price"].agg(["mean", "std"])
        stats = stats.reindex(range(len(categories)))
        return cls(
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            category=category,
            log_price=log_price,
            first_seen=first_seen,
            popularity=popularity(item_ids, interactions, as_of),
            price_mean=stats["mean"].to_numpy(np.float64),
            price_sd=stats["std"].fillna(0.0).to_numpy(np.float64),
        )

    def extend(self, vectors: np.ndarray, category: np.ndarray, log_price: np.ndarray, first_seen: np.ndarray) -> ItemTable:
        """These rows appended (new items: no popularity yet), the category price scales kept."""
        return ItemTable(
            np.vstack([self.vectors, vectors.astype(np.float32)]), np.r_[self.category, category], np.r_[self.log_price, log_price],
            np.r_[self.first_seen, first_seen], np.r_[self.popularity, np.zeros(len(vectors))], self.price_mean, self.price_sd,
        )


def item_columns(rows: pd.DataFrame, categories: list[str], unknown_time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Catalog rows' category codes (-1 unknown), log prices (NaN unknown) and first-seen times in epoch seconds
    (`unknown_time` where missing or unreadable)."""
    n = len(rows)
    category = pd.Index(categories).get_indexer(rows["category"].astype(object)) if "category" in rows else np.full(n, -1)
    price = pd.to_numeric(rows["price"], errors="coerce").to_numpy(np.float64) if "price" in rows else np.full(n, np.nan)
    seen = pd.to_datetime(rows["first_seen"], utc=True, errors="coerce") if "first_seen" in rows else pd.Series(pd.NaT, index=rows.index)
    first_seen = np.where(seen.isna(), unknown_time, seen.astype("int64") / 1e9)
    return np.asarray(category, np.int64), np.log(np.where(price > 0, price, np.nan)), first_seen.astype(np.float64)


def popularity(item_ids: list[str], interactions: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    ts = pd.to_datetime(interactions["ts"], utc=True)
    recent = interactions.loc[(ts < as_of) & (ts >= as_of - pd.Timedelta(days=POPULARITY_DAYS)), "item_id"]
    counts = recent.value_counts().reindex(item_ids, fill_value=0).to_numpy(np.float64)
    return np.log1p(counts)


@dataclass
class Candidates:
    rows: np.ndarray  # index rows, in retrieval (fused) order
    lexical_score: np.ndarray
    lexical_rank: np.ndarray
    dense_rank: np.ndarray
    popular_rank: np.ndarray
    rrf: np.ndarray
    lexical_rows: np.ndarray  # each list as retrieved (after the listing filter): the baselines rank by these
    dense_rows: np.ndarray
    fused_rows: np.ndarray  # lexical and dense alone, fused: the reciprocal-rank-fusion baseline
    query_category: int


def retrieve(index: SearchIndex, items: ItemTable, query: str, query_vector: np.ndarray, config: RetrievalConfig,
             listed_before: float | None = None) -> Candidates:
    """Lexical hits, dense hits and the popular items of the query's category (only items listed by `listed_before`
    when given), fused by reciprocal rank; the best `config.candidates` of the union."""
    lexical_rows, lexical_scores = index.lexical.search(query, config.lexical_depth)
    dense_rows, _ = index.dense.search(query_vector, config.dense_depth)
    # Rows the item table does not have yet: an item being added while this search runs, found next time.
    known = len(items.category)
    lexical_keep = lexical_rows < known
    lexical_rows, lexical_scores, dense_rows = lexical_rows[lexical_keep], lexical_scores[lexical_keep], dense_rows[dense_rows < known]
    if listed_before is not None:
        keep = items.first_seen[lexical_rows] <= listed_before
        lexical_rows, lexical_scores = lexical_rows[keep], lexical_scores[keep]
        dense_rows = dense_rows[items.first_seen[dense_rows] <= listed_before]
    about = lexical_rows[: config.category_hits] if len(lexical_rows) else dense_rows[: config.category_hits]
    codes = items.category[about]
    codes = codes[codes >= 0]
    query_category = int(np.bincount(codes).argmax()) if len(codes) else -1
    popular_rows = items.by_category.get(query_category, np.zeros(0, np.int64)) if query_category >= 0 else np.zeros(0, np.int64)
    if listed_before is not None:
        popular_rows = popular_rows[items.first_seen[popular_rows] <= listed_before]
    popular_rows = popular_rows[: config.popular_depth]
    union = np.unique(np.r_[lexical_rows, dense_rows, popular_rows]).astype(np.int64)
    lexical_rank, dense_rank, popular_rank = (_ranks(union, r) for r in (lexical_rows, dense_rows, popular_rows))
    two = _rrf(lexical_rank, config) + _rrf(dense_rank, config)
    rrf = two + _rrf(popular_rank, config)
    order = np.lexsort((union, -rrf))[: config.candidates]
    fused = np.flatnonzero((lexical_rank < NOT_RETRIEVED) | (dense_rank < NOT_RETRIEVED))
    fused = fused[np.lexsort((union[fused], -two[fused]))]
    lexical_score = np.zeros(len(union), np.float32)
    lexical_score[np.searchsorted(union, lexical_rows)] = lexical_scores
    rows = union[order]
    return Candidates(
        rows=rows,
        lexical_score=lexical_score[order],
        lexical_rank=lexical_rank[order],
        dense_rank=dense_rank[order],
        popular_rank=popular_rank[order],
        rrf=rrf[order],
        lexical_rows=lexical_rows,
        dense_rows=dense_rows,
        fused_rows=union[fused],
        query_category=query_category,
    )


def _rrf(rank: np.ndarray, config: RetrievalConfig) -> np.ndarray:
    return np.where(rank < NOT_RETRIEVED, 1.0 / (config.rrf_k + rank), 0.0)


def _ranks(union: np.ndarray, ranked: np.ndarray) -> np.ndarray:
    """1-based rank in `ranked` of each row of `union` (sorted, unique, a superset of `ranked`); NOT_RETRIEVED where absent."""
    rank = np.full(len(union), NOT_RETRIEVED)
    rank[np.searchsorted(union, ranked)] = np.arange(1, len(ranked) + 1)
    return rank


def query_features(candidates: Candidates, items: ItemTable, query_vector: np.ndarray, now: float, config: RetrievalConfig) -> np.ndarray:
    """(candidates, len(FEATURES)) float64 with the query and item columns filled and the personal ones 0: what a
    query's candidates have whoever searches (the service keeps it per query)."""
    rows = candidates.rows
    n = len(rows)
    category = items.category[rows]
    about = candidates.lexical_rows[: config.category_hits]
    if not len(about):
        about = candidates.dense_rows[: config.category_hits]
    query_share = (category[:, None] == items.category[about][None, :]).mean(axis=1) if len(about) else np.zeros(n)
    columns = {
        "lexical_score": candidates.lexical_score,
        "lexical_rank": candidates.lexical_rank,
        "dense_cosine": items.vectors[rows] @ query_vector.astype(np.float32),
        "dense_rank": candidates.dense_rank,
        "popular_rank": candidates.popular_rank,
        "rrf": candidates.rrf,
        "query_category_share": query_share,
        "popularity": items.popularity[rows],
        "age_days": np.maximum(now - items.first_seen[rows], 0.0) / SECONDS_PER_DAY,
        "log_price": np.nan_to_num(items.log_price[rows], nan=0.0),
    }
    matrix = np.zeros((n, len(FEATURES)), np.float64)
    for name, values in columns.items():
        matrix[:, FEATURES.index(name)] = values
    return matrix


_PERSONAL = [FEATURES.index(name) for name in PERSONAL_FEATURES]


def with_personal(base: np.ndarray, candidates: Candidates, items: ItemTable, history_rows: np.ndarray,
                  recommender_scores: np.ndarray | None) -> np.ndarray:
    """`base` (query_features) with the shopper's columns, rounded to FEATURE_DECIMALS, as float32. `history_rows`:
    index rows of the shopper's items before the search; `recommender_scores`: the recommender's score of each
    candidate for that history."""
    matrix = base.copy()
    rows = candidates.rows
    known_history = history_rows[history_rows >= 0]
    if len(known_history):
        standing = items.price_z[known_history]
        known = standing[np.isfinite(standing)]
        usual = float(known.sum() / (len(known) + PRICE_PRIOR_ITEMS)) if len(known) else np.nan
        price_gap = np.nan_to_num(items.price_z[rows] - usual, nan=0.0)
        category = items.category[rows]
        values = (
            np.zeros(len(rows)) if recommender_scores is None else recommender_scores,
            price_gap,
            np.abs(price_gap),
            (category[:, None] == items.category[known_history][None, :]).mean(axis=1),
            np.log1p(len(known_history)),
        )
        for column, value in zip(_PERSONAL, values):
            matrix[:, column] = value
    return np.round(matrix, FEATURE_DECIMALS, out=matrix).astype(np.float32)


def candidate_features(candidates: Candidates, items: ItemTable, query_vector: np.ndarray, now: float,
                       history_rows: np.ndarray, recommender_scores: np.ndarray | None, config: RetrievalConfig) -> np.ndarray:
    """(candidates, len(FEATURES)) float32, in FEATURES' order."""
    return with_personal(query_features(candidates, items, query_vector, now, config), candidates, items, history_rows, recommender_scores)
