"""Search sessions turned into ranking examples: candidates and their features for every search of a window.

The shopper's history is what they interacted with before the search (the recommender's positive events); the
recommender score comes from a model that has not seen the window: the train-only tuning fit for the validation
window the search ranker learns on, the shipped refit for the test window it is judged on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rec_pipeline.ranker.model import HybridRanker, season_features
from rec_pipeline.ranker.train import history_matrix, score
from rec_pipeline.search.features import FEATURES, ItemTable, RetrievalConfig, candidate_features, retrieve
from rec_pipeline.search.index import SearchIndex


@dataclass
class Recommender:
    """A trained recommender and the item ids of its columns."""

    model: HybridRanker
    item_ids: list[str]


@dataclass
class Examples:
    sessions: pd.DataFrame  # the searches, one per group, in order
    features: np.ndarray  # (rows, len(FEATURES))
    labels: np.ndarray  # (rows,) grades, 0 for candidates nothing happened to
    groups: np.ndarray  # (sessions,) candidate counts
    candidates: list[np.ndarray]  # per session, the index rows in retrieval order
    lexical: list[np.ndarray]  # per session, the baselines' lists: lexical, dense and their fusion
    dense: list[np.ndarray]
    fused: list[np.ndarray]
    targets: list[dict[int, int]]  # per session, index row -> grade of what followed the search
    history_lengths: np.ndarray

    def offsets(self) -> np.ndarray:
        return np.r_[0, np.cumsum(self.groups)]


def histories_before(sessions: pd.DataFrame, interactions: pd.DataFrame) -> list[list[str]]:
    """Per search, the shopper's items before it, in the order first interacted with (as the recommender reads them)."""
    data = interactions[["user_id", "item_id", "ts"]].copy()
    data["ts"] = pd.to_datetime(data["ts"], utc=True)
    data = data.sort_values(["user_id", "ts"], kind="stable").drop_duplicates(["user_id", "item_id"])
    by_user = {user: (frame["item_id"].to_numpy(), frame["ts"].to_numpy()) for user, frame in data.groupby("user_id", sort=False)}
    out = []
    for user, ts in zip(sessions["user_id"], pd.to_datetime(sessions["ts"], utc=True).to_numpy()):
        items, times = by_user.get(user, (np.zeros(0, object), np.zeros(0, "datetime64[ns]")))
        out.append(items[: np.searchsorted(times, ts, side="left")].tolist())
    return out


def recommender_scores(recommender: Recommender, histories: list[list[str]], when: pd.Series, rows_of: list[np.ndarray],
                       index_item_ids: list[str], batch: int = 512) -> list[np.ndarray]:
    """The recommender's score of each search's candidate rows (index rows), for its history at the search's time."""
    model_row = pd.Index(recommender.item_ids)
    length = recommender.model.config.history
    column_of_index_row = model_row.get_indexer(index_item_ids)  # -1: an item the recommender has no column for
    out: list[np.ndarray] = []
    for start in range(0, len(histories), batch):
        chunk = histories[start : start + batch]
        sequences = [model_row.get_indexer(h) + 1 for h in chunk]
        matrix = history_matrix([s[s > 0] for s in sequences], length)
        season = season_features(pd.to_datetime(when.iloc[start : start + batch], utc=True)).mean(axis=0, keepdims=True)
        scores = score(recommender.model, matrix, season)
        for n, rows in enumerate(rows_of[start : start + batch]):
            columns = column_of_index_row[rows]
            out.append(np.where(columns >= 0, scores[n][np.maximum(columns, 0)], 0.0).astype(np.float32))
    return out


def build_examples(sessions: pd.DataFrame, index: SearchIndex, items: ItemTable, query_vectors: dict[str, np.ndarray],
                   interactions: pd.DataFrame, recommender: Recommender | None, config: RetrievalConfig) -> Examples:
    """Candidates, features and labels for each search with something after it, retrieving only items already
    listed at the search's time, as the shop could have shown them."""
    sessions = sessions[sessions["items"].map(len) > 0].reset_index(drop=True)
    rows_of = index.rows
    stamps = pd.to_datetime(sessions["ts"], utc=True).astype("int64").to_numpy() / 1e9
    retrieved = [
        retrieve(index, items, query, query_vectors[query], config, listed_before=ts)
        for query, ts in zip(sessions["query"], stamps)
    ]
    histories = histories_before(sessions, interactions)
    candidate_rows = [c.rows for c in retrieved]
    personal = (recommender_scores(recommender, histories, sessions["ts"], candidate_rows, index.item_ids)
                if recommender is not None else [None] * len(sessions))
    features, labels, targets = [], [], []
    for n, candidates in enumerate(retrieved):
        history_rows = np.array([rows_of.get(i, -1) for i in histories[n]], np.int64)
        features.append(candidate_features(candidates, items, query_vectors[sessions["query"].iloc[n]], stamps[n], history_rows, personal[n], config))
        target = {rows_of[i]: g for i, g in zip(sessions["items"].iloc[n], sessions["grades"].iloc[n]) if i in rows_of}
        targets.append(target)
        labels.append(np.array([target.get(r, 0) for r in candidates.rows.tolist()], np.int32))
    empty = np.zeros((0, len(FEATURES)), np.float32)
    return Examples(
        sessions=sessions,
        features=np.vstack(features) if features else empty,
        labels=np.concatenate(labels) if labels else np.zeros(0, np.int32),
        groups=np.array([len(c.rows) for c in retrieved], np.int64),
        candidates=candidate_rows,
        lexical=[c.lexical_rows for c in retrieved],
        dense=[c.dense_rows for c in retrieved],
        fused=[c.fused_rows for c in retrieved],
        targets=targets,
        history_lengths=np.array([len(h) for h in histories], np.int64),
    )
