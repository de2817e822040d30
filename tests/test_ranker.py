"""The hybrid ranker: its pieces by hand, and that it learns, deterministically, on data with a clear signal."""

import numpy as np
import pandas as pd
import torch

from rec_pipeline.evaluation import temporal_split
from rec_pipeline.metrics import evaluate
from rec_pipeline.ranker.model import HybridRanker, RankerConfig
from rec_pipeline.ranker.train import TrainConfig, first_purchases, fit, history_matrix, score, split_histories, training_examples


def test_histories_are_items_in_the_order_first_bought_left_padded():
    purchases = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2"],
            "item_id": ["b", "a", "b", "c", "zz"],  # "zz" is not a known item
            "ts": pd.to_datetime(["2025-01-02", "2025-01-01", "2025-01-03", "2025-01-04", "2025-01-01"], utc=True),
        }
    )
    sequences = first_purchases(purchases, np.array(["a", "b", "c"], dtype=object))
    assert {u: s.tolist() for u, s in sequences.items()} == {"u1": [1, 2, 3]}
    histories, targets = training_examples(sequences, length=2)
    assert histories.tolist() == [[0, 1], [1, 2]] and targets.tolist() == [2, 3]
    assert history_matrix([np.array([4, 5, 6]), np.array([], dtype=np.int64)], 2).tolist() == [[5, 6], [0, 0]]


def test_cold_items_are_represented_by_text_alone_and_an_empty_history_adds_nothing():
    text = torch.randn(4, 8)
    model = HybridRanker(RankerConfig(n_items=3, text_dim=8, dim=4), text, torch.tensor([False, True, True, False]))
    before = model.items(torch.tensor([3, 1])).detach().clone()
    with torch.no_grad():
        model.item_id.weight += 1.0
    after = model.items(torch.tensor([3, 1])).detach()
    assert torch.equal(before[0], after[0]) and not torch.equal(before[1], after[1])
    model.eval()
    # No history: no item contributes, only the user projection's bias is left.
    empty = model.users(torch.zeros(1, 5, dtype=torch.long))
    assert torch.allclose(empty, model.user_proj(torch.zeros(1, 4)))
    scores = model(torch.tensor([[0, 0, 0], [0, 1, 2]]))
    assert scores.shape == (2, 4) and torch.isfinite(scores).all()


def grouped_purchases(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Two groups of users, each buying from its own half of the items; item texts say which half."""
    rng = np.random.default_rng(seed)
    items = np.array([f"i{k:02d}" for k in range(20)], dtype=object)
    vectors = np.zeros((20, 8), dtype=np.float32)
    vectors[:10, 0], vectors[10:, 1] = 1.0, 1.0
    vectors += rng.normal(0, 0.05, vectors.shape).astype(np.float32)
    rows = []
    for u in range(60):
        own = items[:10] if u % 2 else items[10:]
        for day, item in enumerate(rng.choice(own, size=5, replace=False)):
            rows.append((f"u{u}", item, pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=day)))
        rows.append((f"u{u}", rng.choice(own), pd.Timestamp("2025-03-01", tz="UTC")))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "ts"]), items, vectors


def test_the_ranker_learns_the_groups_and_is_deterministic_under_a_seed():
    purchases, items, vectors = grouped_purchases()
    split = temporal_split(purchases, "2025-02-01")
    train = purchases[purchases["ts"] < split.cut]
    config, train_config = RankerConfig(n_items=len(split.item_ids), text_dim=8, dim=16, history=10), TrainConfig(epochs=15, batch_size=64, lr=1e-2, threads=1)
    item_vectors = pd.DataFrame(vectors, index=items).loc[split.item_ids].to_numpy()
    first = fit(train, split.item_ids, item_vectors, config, train_config)
    second = fit(train, split.item_ids, item_vectors, config, train_config)
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    assert first.epochs[-1]["loss"] < first.epochs[0]["loss"]

    histories = split_histories(split, train, config.history)
    scores = score(first.model, histories)
    means, _ = evaluate(scores, split.candidates, split.targets, ks=(5,))
    assert means["hitrate@5"] >= 0.9  # the target's group is ranked first; random would give about 0.3
    with_validation = fit(train, split.item_ids, item_vectors, config, train_config, validation=(split, histories))
    assert 1 <= with_validation.best_epoch <= len(with_validation.epochs)
    assert all("val_ndcg@20" in e for e in with_validation.epochs)
