"""A query in, ranked products out: what `rec-pipeline search` and the service's POST /search run.

The engine holds the two indexes, the item table and the ONNX search ranker; the shopper's history and the
recommender's scores for it come from the caller (the registered model's live towers, in both callers). Items added
while serving are indexed at once, lexically and densely.
"""

from __future__ import annotations

import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from rec_pipeline.encoders import text_hash
from rec_pipeline.privacy import desensitise_query
from rec_pipeline.search.features import Candidates, ItemTable, RetrievalConfig, item_columns, query_features, retrieve, with_personal
from rec_pipeline.search.index import SearchIndex, open_search_index
from rec_pipeline.search.ranker import SearchRanker

MAX_QUERY_CHARS = 500  # longer is not a shopper's query; refused with a clear message rather than cut silently
QUERY_CACHE_SIZE = 50_000  # queries prepared per process: shoppers repeat themselves (13% of the default log's searches are distinct queries)

# (history item ids, candidate item ids) -> the recommender's score of each candidate for that history.
PersonalScores = Callable[[list[str], list[str]], np.ndarray]


class BadQuery(ValueError):
    """A query the engine refuses, with the reason in words."""


def clean_query(query: object) -> str:
    """The query as the engine and every log see it: text, NFC, stripped, desensitised."""
    if not isinstance(query, str):
        raise BadQuery(f"query must be text, not {type(query).__name__}")
    text = unicodedata.normalize("NFC", query).strip()
    if not text:
        raise BadQuery("query is empty or whitespace only")
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(f"query is {len(text):,} characters; at most {MAX_QUERY_CHARS} are accepted")
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise BadQuery("query holds control characters")
    return desensitise_query(text)


@dataclass
class Prepared:
    vector: np.ndarray
    candidates: Candidates
    features: np.ndarray  # query_features: the personal columns still 0
    item_ids: list[str]  # of the candidates
    index: SearchIndex  # the views they were made from
    items: ItemTable


@dataclass
class Hit:
    item_id: str
    score: float


class SearchEngine:
    def __init__(self, index: SearchIndex, items: ItemTable, ranker: SearchRanker, encoder, retrieval: RetrievalConfig,
                 categories: list[str], clock: float, cache_size: int = QUERY_CACHE_SIZE):
        self.index, self.items, self.ranker, self.encoder, self.retrieval = index, items, ranker, encoder, retrieval
        self.cache_size = cache_size
        self.logged_vectors = None  # an EmbeddingCache of logged queries' vectors, by text hash
        # The time recency and popularity are measured at: the newest logged interaction. In a live shop that is
        # seconds ago; on a replayed log (the demo's is from 2025) the wall clock would age every item by the gap
        # and put the ranker outside what it learnt on.
        self.clock = clock
        self.categories = list(categories)
        self._prepared: OrderedDict[str, Prepared] = OrderedDict()
        self._lock = threading.Lock()
        self.cache_hits = self.cache_misses = 0

    @classmethod
    def open(cls, data_dir: str | Path, encoder, working_copy: str | Path | None = None, threads: int = 1,
             cache_size: int = QUERY_CACHE_SIZE) -> SearchEngine:
        """From a materialised project: data/search, data/models/search_ranker, the catalog, the interactions
        (popularity as the logs last saw it) and the item vectors."""
        from rec_pipeline.search.protocol import RANKER_DIR, Project, query_cache

        project = Project.load(data_dir)
        index = open_search_index(Path(data_dir) / "search", working_copy)
        as_of = pd.to_datetime(project.interactions["ts"], utc=True).max() + pd.Timedelta(seconds=1)
        items = project.item_table(index.item_ids, as_of)
        ranker = SearchRanker(Path(data_dir).joinpath(*RANKER_DIR), threads)
        retrieval = RetrievalConfig(**ranker.settings["retrieval"])
        categories = sorted(project.catalog["category"].dropna().astype(str).unique()) if "category" in project.catalog else []
        engine = cls(index, items, ranker, encoder, retrieval, categories, as_of.timestamp(), cache_size)
        if cache_size > 0:
            # The vectors of every query the logs hold, which search_ranker encoded: a shop's queries repeat, and
            # one that repeats a logged query needs no transformer run (8 ms of one core for a short query here).
            engine.logged_vectors = query_cache(data_dir, encoder)
        return engine

    def prepared(self, query: str) -> Prepared:
        """The query's vector, candidates and their query-side features: the same for every shopper, so kept per
        query (LRU, `cache_size` queries; emptied when items are added). Measured with bench.search on 2 cores at
        concurrency 8: see BENCHMARKS.md; in process on the demo, 1.9 ms a search without it, 1.1 ms with it."""
        with self._lock:
            found = self._prepared.get(query)
            if found is not None:
                self._prepared.move_to_end(query)
                self.cache_hits += 1
                return found
        key = text_hash(query)
        if self.logged_vectors is not None and key in self.logged_vectors:
            vector = self.logged_vectors.get([key])[0]
        else:
            vector = self.encoder.encode([query])[0]
        index, items = self.index, self.items  # one consistent view while items are added meanwhile
        candidates = retrieve(index, items, query, vector, self.retrieval)
        ready = Prepared(vector, candidates, query_features(candidates, items, vector, self.clock, self.retrieval),
                         [index.item_ids[r] for r in candidates.rows.tolist()], index, items)
        with self._lock:
            self.cache_misses += 1
            if self.cache_size > 0 and ready.index is self.index:
                self._prepared[query] = ready
                while len(self._prepared) > self.cache_size:
                    self._prepared.popitem(last=False)
        return ready

    def search(self, query: object, history: list[str], k: int, personal: PersonalScores | None = None) -> tuple[str, list[Hit]]:
        """The cleaned query and the best `k` items for it, for a shopper with `history` (item ids, oldest first)."""
        text = clean_query(query)
        ready = self.prepared(text)
        if not len(ready.candidates.rows):
            return text, []
        rows_of = ready.index.rows
        history_rows = np.array([rows_of.get(i, -1) for i in history], np.int64)
        scores = personal(history, ready.item_ids) if personal is not None and history else None
        features = with_personal(ready.features, ready.candidates, ready.items, history_rows, scores)
        ranked = self.ranker.scores(features)
        order = np.argsort(-ranked, kind="stable")[:k]
        return text, [Hit(ready.item_ids[n], round(float(ranked[n]), 5)) for n in order.tolist()]

    def add_items(self, item_ids: list[str], texts: list[str], vectors: np.ndarray, rows: pd.DataFrame) -> None:
        """New or changed items, searchable when this returns. A changed item keeps its row: its text is replaced
        in the lexical index and its vector in the item table (the HNSW graph keeps the old vector as an entry
        point; the cosine the ranker reads is the new one)."""
        with self._lock:
            known = self.index.rows
            new = [n for n, i in enumerate(item_ids) if i not in known]
            changed = [n for n, i in enumerate(item_ids) if i in known]
            rows = rows.reset_index(drop=True)
            category, log_price, first_seen = item_columns(rows, self.categories, unknown_time=self.clock)
            items = self.items
            if changed:
                items = ItemTable(items.vectors.copy(), items.category.copy(), items.log_price.copy(), items.first_seen, items.popularity,
                                  items.price_mean, items.price_sd)
                for n in changed:
                    r = known[item_ids[n]]
                    items.vectors[r], items.category[r], items.log_price[r] = vectors[n], category[n], log_price[n]
                items.__post_init__()
            if new:
                items = items.extend(vectors[new], category[new], log_price[new], first_seen[new])
            start = len(self.index.item_ids)
            self.index.lexical.add([known[item_ids[n]] for n in changed] + list(range(start, start + len(new))),
                                   [texts[n] for n in changed] + [texts[n] for n in new])
            self.index.dense.add(vectors[new])
            self.index = SearchIndex(self.index.item_ids + [item_ids[n] for n in new], self.index.lexical, self.index.dense, self.index.config)
            self.items = items
            self._prepared.clear()  # candidates made before these items would miss them


def recommender_personal(model, tables, rows: dict[str, int], season: np.ndarray) -> PersonalScores:
    """The recommender's score of candidates for a history, from a LiveModel over `tables` (`rows`: item id -> table
    row, 1-based); 0 for an item the recommender has no row for."""
    def scores(history: list[str], candidates: list[str]) -> np.ndarray:
        known = [rows[i] for i in history if i in rows][-model.history_length :]
        if not known:
            return np.zeros(len(candidates), np.float32)
        at = np.array([rows.get(c, 0) for c in candidates], np.int64)
        # The ranker's score (live_scores) for the candidates' rows only: the catalog-wide product is not needed.
        user = model.users.run(None, {"history": np.array([known], np.int64), "table": tables.table})[0][0]
        scores = tables.unit[at] @ (user / np.float32(model.temperature)) + tables.bias[at] @ season[0, : tables.bias.shape[1]]
        return np.where(at > 0, scores, 0.0).astype(np.float32)

    return scores
