"""The search library on its own: the indexes (CJK text, HNSW against exact search, items added while open), search
sessions against a hand-made log, the metrics against a brute-force reference, and bad queries."""

import math

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.privacy import desensitise_query
from rec_pipeline.search.engine import MAX_QUERY_CHARS, BadQuery, clean_query
from rec_pipeline.search.evaluate import ranking_metrics
from rec_pipeline.search.features import ItemTable, RetrievalConfig, _ranks, retrieve
from rec_pipeline.search.index import DenseIndex, SearchIndexConfig, build_search_index, exact_search, open_search_index
from rec_pipeline.search.sessions import search_sessions


def unit(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


CHINESE = [
    ("c1", "手工大豆蜡香薰蜡烛", "蜡烛与香薰"),
    ("c2", "北欧风格玻璃烛台", "蜡烛与香薰"),
    ("c3", "纯棉厨房茶巾三件套", "厨房用品"),
    ("c4", "不锈钢搅拌碗", "厨房用品"),
    ("c5", "Linen tea towel 亚麻茶巾", "厨房用品"),
]


def test_a_cjk_query_finds_cjk_titles_and_latin_words_still_match(tmp_path):
    ids, texts = [c[0] for c in CHINESE], [f"{c[1]}. {c[2]}" for c in CHINESE]
    index = open_search_index(build_search_index(tmp_path / "index", ids, texts, unit(len(ids), 8)))
    rows, scores = index.lexical.search("香薰蜡烛", 3)
    assert ids[rows[0]] == "c1" and scores[0] > 0
    assert "c2" in [ids[r] for r in rows]  # 烛 alone still matches the candle holder
    rows, _ = index.lexical.search("茶巾", 5)
    assert {ids[r] for r in rows} == {"c3", "c5"}
    rows, _ = index.lexical.search("tea towels", 5)  # stemmed: towels finds towel
    assert [ids[r] for r in rows] == ["c5"]
    assert index.lexical.search("搅拌碗", 1)[0].tolist() == [3]
    assert len(index.lexical.search("，。！", 5)[0]) == 0  # punctuation only: no words, no hits


def test_hnsw_holds_recall_against_exact_search():
    vectors = unit(5000, 32, seed=1)
    dense = DenseIndex.build(vectors, SearchIndexConfig())
    queries = unit(100, 32, seed=2)
    recall = np.mean([len(set(dense.search(q, 100)[0].tolist()) & set(exact_search(vectors, q, 100).tolist())) / 100 for q in queries])
    assert recall >= 0.95, recall
    # An item vector is its own nearest neighbour.
    assert dense.search(vectors[42], 1)[0].tolist() == [42]


def test_items_added_to_an_open_index_are_found_and_a_changed_one_is_not_doubled(tmp_path):
    ids = [f"i{n}" for n in range(4)]
    folder = build_search_index(tmp_path / "index", ids, ["red wool scarf", "blue cotton shirt", "green glass vase", "oak chopping board"], unit(4, 8))
    index = open_search_index(folder, working_copy=tmp_path / "copy")
    index.lexical.add([4], ["zanzibar driftwood lantern"])
    index.dense.add(unit(1, 8, seed=9))
    assert index.lexical.search("driftwood", 5)[0].tolist() == [4] and index.dense.size == 5
    index.lexical.add([0], ["red cashmere scarf"])  # changed item: replaced, not added
    assert index.lexical.size == 5
    assert index.lexical.search("cashmere", 5)[0].tolist() == [0] and len(index.lexical.search("wool", 5)[0]) == 0
    # The built index is untouched: the service writes to its own copy.
    assert len(open_search_index(folder).lexical.search("driftwood", 5)[0]) == 0


def test_retrieval_keeps_only_items_listed_at_the_search_time_and_fuses_three_lists(tmp_path):
    ids = [f"i{n}" for n in range(6)]
    texts = ["linen tea towel", "linen napkin", "cotton tea towel", "steel bowl", "linen apron", "linen tea towel new"]
    catalog = pd.DataFrame({"item_id": ids, "category": ["kitchen"] * 5 + ["kitchen"], "price": [5.0, 6, 7, 8, 9, 10],
                            "first_seen": pd.to_datetime(["2025-01-01"] * 5 + ["2025-06-01"], utc=True)})
    vectors = unit(6, 8)
    index = open_search_index(build_search_index(tmp_path / "index", ids, texts, vectors))
    interactions = pd.DataFrame({"user_id": ["u"] * 3, "item_id": ["i3", "i3", "i1"], "ts": pd.to_datetime(["2025-05-01"] * 3, utc=True)})
    items = ItemTable.build(ids, catalog, vectors, interactions, pd.Timestamp("2025-05-15", tz="UTC"))
    before = pd.Timestamp("2025-05-20", tz="UTC").timestamp()
    found = retrieve(index, items, "linen tea towel", vectors[0], RetrievalConfig(), listed_before=before)
    assert 5 not in found.rows.tolist() and 5 not in found.lexical_rows.tolist()  # not listed yet
    assert found.rows[0] == 0  # first in the lexical list and in the dense one (its own vector)
    assert found.popular_rank[found.rows.tolist().index(3)] == 1  # the category's most popular item: found by the third list
    assert set(found.rows.tolist()) == {0, 1, 2, 3, 4}
    assert _ranks(np.array([2, 5, 7]), np.array([7, 2])).tolist() == [2.0, 1000.0, 1.0]


def test_search_sessions_take_what_followed_each_search_until_the_next_one():
    rows = [
        # session s1: search, click A, cart A, search again, purchase B; session s2: browse then search, click C
        ("e1", "2025-01-01 10:00", "u1", "s1", "search", None, "red scarf"),
        ("e2", "2025-01-01 10:01", "u1", "s1", "click", "A", None),
        ("e3", "2025-01-01 10:02", "u1", "s1", "add_to_cart", "A", None),
        ("e4", "2025-01-01 10:03", "u1", "s1", "view", "B", None),
        ("e5", "2025-01-01 10:04", "u1", "s1", "search", None, "blue scarf"),
        ("e6", "2025-01-01 10:05", "u1", "s1", "purchase", "B", None),
        ("e7", "2025-01-01 10:06", "u1", "s1", "click", "D", None),
        ("e8", "2025-01-02 09:00", "u2", "s2", "click", "Z", None),
        ("e9", "2025-01-02 09:01", "u2", "s2", "search", None, "vase"),
        ("e10", "2025-01-02 09:02", "u2", "s2", "click", "C", None),
        ("e11", "2025-01-03 09:00", "u3", "s3", "search", None, "nothing after"),
    ]
    events = pd.DataFrame(rows, columns=["event_id", "ts", "user_id", "session_id", "event_type", "item_id", "query"])
    events["ts"] = pd.to_datetime(events["ts"], utc=True)
    sessions = search_sessions(events.sample(frac=1, random_state=0), pd.Timestamp("2025-01-02", tz="UTC"), pd.Timestamp("2025-01-03", tz="UTC"))
    got = {r.search_id: (r.query, r.split, list(r.items), list(r.grades)) for r in sessions.itertuples()}
    assert got == {
        "e1": ("red scarf", "train", ["A"], [2]),
        "e5": ("blue scarf", "train", ["B", "D"], [3, 1]),
        "e9": ("vase", "validation", ["C"], [1]),  # Z came before the search: not its result
        "e11": ("nothing after", "test", [], []),
    }


def brute_ndcg(ranking, target, k):
    dcg = sum((2 ** target.get(r, 0) - 1) / math.log2(i + 2) for i, r in enumerate(ranking[:k]))
    ideal = sorted(target.values(), reverse=True)[:k]
    return dcg / sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))


def test_search_metrics_match_a_brute_force_reference():
    rng = np.random.default_rng(3)
    for _ in range(200):
        ranking = rng.permutation(300)[: rng.integers(0, 150)]
        target = {int(r): int(rng.integers(1, 4)) for r in rng.choice(300, size=rng.integers(1, 8), replace=False)}
        ndcg, rr, recall = ranking_metrics(ranking, target)
        assert ndcg == pytest.approx(brute_ndcg(list(ranking), target, 10), abs=1e-12)
        first = next((i for i, r in enumerate(ranking[:100]) if r in target), None)
        assert rr == (0.0 if first is None else 1 / (first + 1))
        assert recall == pytest.approx(len(set(ranking[:100].tolist()) & set(target)) / len(target))


@pytest.mark.parametrize("query, message", [
    ("", "empty"), ("   \t\n ", "empty"), ("a" * 10_000, f"at most {MAX_QUERY_CHARS}"), ("tea\x00towel", "control"), (None, "text"), (42, "text"),
])
def test_a_bad_query_gets_a_clear_reason(query, message):
    with pytest.raises(BadQuery, match=message):
        clean_query(query)


def test_queries_are_desensitised_before_anything_sees_them():
    assert clean_query("  bob.smith+shop@example.co.uk linen towel ") == "<email> linen towel"
    assert clean_query("call 07700 900123 about order") == "call <number> about order"
    assert clean_query("card 4111-1111-1111-1111 gift") == "card <number> gift"
    assert desensitise_query("size 42 candle") == "size 42 candle"  # short numbers are shoppers' words
    assert clean_query("香薰蜡烛") == "香薰蜡烛"
