"""The two retrieval indexes over item text: lexical BM25 on tantivy, and the item vectors in a faiss HNSW graph.

Both address items by row (the position in `item_ids`), so a candidate's lexical score, its cosine and its
recommender score line up. Both take new items while serving: tantivy by adding documents and committing, faiss by
adding vectors to the graph; neither needs a rebuild.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rec_pipeline.storage import atomic_folder

LEXICAL_DIR = "lexical"
DENSE_FILE = "dense.faiss"
ITEMS_FILE = "items.json"
SETTINGS_FILE = "search_index.json"

# Words are runs of letters or digits; a CJK character is a word of its own, the unigram analysis of Lucene's
# StandardAnalyzer for Chinese and Japanese, so that 香薰蜡烛 matches a title with 蜡烛 in it without a dictionary.
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
WORD_PATTERN = rf"[{CJK}]|[^\s\p{{P}}\p{{S}}{CJK}]+"
ANALYZER = "shop_text"


@dataclass(frozen=True)
class SearchIndexConfig:
    hnsw_m: int = 32  # graph degree: recall against memory (4 * M * 2 int32 links per item)
    ef_construction: int = 200
    ef_search: int = 128  # measured: recall@100 against exact search 0.99+ on the default catalog (tests/test_search.py)
    stemmer: str = "english"  # tantivy's Snowball stemmer language ("" for none): "candles" finds "candle"


def analyzer(config: SearchIndexConfig = SearchIndexConfig()):
    import tantivy

    builder = tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex(WORD_PATTERN)).filter(tantivy.Filter.lowercase())
    if config.stemmer:
        builder = builder.filter(tantivy.Filter.stemmer(config.stemmer))
    return builder.build()


def _schema():
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("row", stored=True, indexed=True, fast=True)
    builder.add_text_field("text", stored=False, tokenizer_name=ANALYZER, index_option="freq")
    return builder.build()


class LexicalIndex:
    """BM25 over the item text, one tantivy document per item row."""

    def __init__(self, path: Path | None, config: SearchIndexConfig):
        import tantivy

        self.config = config
        self.analyzer = analyzer(config)
        self.index = tantivy.Index(_schema(), path=None if path is None else str(path), reuse=True)
        self.index.register_tokenizer(ANALYZER, self.analyzer)
        self._writer = None
        self.index.reload()

    def add(self, rows: list[int], texts: list[str]) -> None:
        import tantivy

        if self._writer is None:
            self._writer = self.index.writer(heap_size=50_000_000, num_threads=1)
        for row, text in zip(rows, texts):
            # A changed item replaces its document rather than adding a second one.
            self._writer.delete_documents_by_term("row", int(row))
            self._writer.add_document(tantivy.Document(row=int(row), text=text))
        self._writer.commit()
        self._writer.wait_merging_threads()
        self._writer = None
        self.index.reload()

    def terms(self, query: str) -> list[str]:
        return list(dict.fromkeys(self.analyzer.analyze(query)))

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows and BM25 scores of the best `k` items for the query, best first; nothing for a query with no words."""
        import tantivy

        terms = self.terms(query)
        if not terms or k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        schema = self.index.schema
        clauses = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "text", term)) for term in terms]
        searcher = self.index.searcher()
        hits = searcher.search(tantivy.Query.boolean_query(clauses), k, count=False).hits
        rows = np.array(searcher.fast_field_values("row", [address for _, address in hits]), np.int64)
        return rows, np.array([score for score, _ in hits], np.float32)

    @property
    def size(self) -> int:
        return self.index.searcher().num_docs


class DenseIndex:
    """Unit item vectors in an HNSW graph on inner product (= cosine), rows in insertion order."""

    def __init__(self, index):
        import faiss

        # One query at a time, here and in the service: OpenMP's team for a single query only spins. Measured with
        # bench.search: p50 at concurrency 1 from 8.0 ms to 2.5 ms with one thread.
        faiss.omp_set_num_threads(1)
        self.index = index

    @classmethod
    def build(cls, vectors: np.ndarray, config: SearchIndexConfig) -> DenseIndex:
        import faiss

        index = faiss.IndexHNSWFlat(vectors.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        index.hnsw.efSearch = config.ef_search
        dense = cls(index)
        dense.add(vectors)
        return dense

    def add(self, vectors: np.ndarray) -> None:
        if len(vectors):
            self.index.add(np.ascontiguousarray(vectors, dtype=np.float32))

    def search(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        if k < 1:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, rows = self.index.search(np.ascontiguousarray(query_vector.reshape(1, -1), dtype=np.float32), k)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep]

    @property
    def size(self) -> int:
        return int(self.index.ntotal)


def exact_search(vectors: np.ndarray, query_vector: np.ndarray, k: int) -> np.ndarray:
    """The reference the HNSW graph is held against: every item's inner product, best `k` rows."""
    scores = vectors @ query_vector
    return np.argsort(-scores, kind="stable")[:k]


@dataclass
class SearchIndex:
    item_ids: list[str]
    lexical: LexicalIndex
    dense: DenseIndex
    config: SearchIndexConfig

    def __post_init__(self) -> None:
        self.rows = {item_id: row for row, item_id in enumerate(self.item_ids)}


def build_search_index(folder: str | Path, item_ids: list[str], texts: list[str], vectors: np.ndarray,
                       config: SearchIndexConfig = SearchIndexConfig()) -> Path:
    """Write both indexes and the row order under `folder` (replacing what was there)."""
    import faiss

    folder = Path(folder)
    if len(item_ids) != len(texts) or len(item_ids) != len(vectors):
        raise ValueError(f"{len(item_ids)} item ids, {len(texts)} texts and {len(vectors)} vectors: they must line up")
    with atomic_folder(folder) as tmp:
        (tmp / LEXICAL_DIR).mkdir()
        LexicalIndex(tmp / LEXICAL_DIR, config).add(list(range(len(item_ids))), list(texts))
        faiss.write_index(DenseIndex.build(vectors, config).index, str(tmp / DENSE_FILE))
        (tmp / ITEMS_FILE).write_text(json.dumps(list(item_ids)))
        (tmp / SETTINGS_FILE).write_text(json.dumps(asdict(config), indent=2))
    return folder


def open_search_index(folder: str | Path, working_copy: str | Path | None = None) -> SearchIndex:
    """Open an index `build_search_index` wrote. Items added later go to the open index only; with `working_copy`,
    the lexical files are copied there first, so that the built index stays as DVC recorded it."""
    import faiss

    folder = Path(folder)
    for name in (LEXICAL_DIR, DENSE_FILE, ITEMS_FILE, SETTINGS_FILE):
        if not (folder / name).exists():
            raise FileNotFoundError(f"{folder / name}: missing (materialise search_index)")
    config = SearchIndexConfig(**json.loads((folder / SETTINGS_FILE).read_text()))
    lexical_path = folder / LEXICAL_DIR
    if working_copy is not None:
        lexical_path = Path(working_copy)
        shutil.rmtree(lexical_path, ignore_errors=True)
        shutil.copytree(folder / LEXICAL_DIR, lexical_path)
    dense = DenseIndex(faiss.read_index(str(folder / DENSE_FILE)))
    dense.index.hnsw.efSearch = config.ef_search
    item_ids = json.loads((folder / ITEMS_FILE).read_text())
    return SearchIndex(item_ids, LexicalIndex(lexical_path, config), dense, config)
