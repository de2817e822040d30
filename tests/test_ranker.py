"""The hybrid ranker: its pieces by hand, and that it learns, deterministically, on data with a clear signal."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rec_pipeline.evaluation import temporal_split
from rec_pipeline.metrics import evaluate
from rec_pipeline.ranker.model import HybridRanker, ItemFeatures, RankerConfig, load_ranker, save_ranker, season_features, window_season
from rec_pipeline.ranker.train import (
    TrainConfig,
    Validation,
    epoch_seconds,
    fit,
    history_matrix,
    purchase_sequences,
    score,
    split_histories,
    training_examples,
)


def test_histories_are_items_in_the_order_first_bought_left_padded():
    purchases = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2"],
            "item_id": ["b", "a", "b", "c", "zz"],  # "zz" is not a known item
            "ts": pd.to_datetime(["2025-01-02", "2025-01-01", "2025-01-03", "2025-01-04", "2025-01-01"], utc=True),
        }
    )
    sequences = purchase_sequences(purchases, np.array(["a", "b", "c"], dtype=object))
    assert {u: s[0].tolist() for u, s in sequences.items()} == {"u1": [1, 2, 3]}
    histories, targets, seasons, times = training_examples(sequences, length=2)
    assert histories.tolist() == [[0, 1], [1, 2]] and targets.tolist() == [2, 3]
    # The season and time of each example are those of its target's purchase: 2 and 4 January.
    assert np.allclose(seasons, season_features(pd.to_datetime(["2025-01-02", "2025-01-04"], utc=True)))
    assert times.tolist() == [1735776000, 1735948800]
    assert history_matrix([np.array([4, 5, 6]), np.array([], dtype=np.int64)], 2).tolist() == [[5, 6], [0, 0]]


def test_season_features_are_the_day_of_year_on_a_circle_and_windows_average_them():
    features = season_features(pd.to_datetime(["2025-01-01", "2025-07-02", "2025-12-31"], utc=True))
    assert np.allclose(features[:, 0], 1.0)
    assert np.allclose(np.hypot(features[:, 1], features[:, 2]), 1.0, atol=1e-6)
    assert features[1, 2] < -0.99 and features[0, 2] > 0.99 and features[2, 2] > 0.99  # midsummer opposite new year
    window = window_season(pd.Timestamp("2025-03-01", tz="UTC"), pd.Timestamp("2025-03-04", tz="UTC"))
    days = season_features(pd.to_datetime(["2025-03-01", "2025-03-02", "2025-03-03"], utc=True))
    assert np.allclose(window, days.mean(axis=0, keepdims=True))


def test_side_features_number_categories_and_price_bands_with_zero_for_unknown():
    catalog = pd.DataFrame(
        {"item_id": ["a", "b", "c", "d"], "category": ["toys", "books", None, "toys"], "price": [1.0, 10.0, 100.0, np.nan]}
    )
    item_ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    features = ItemFeatures.fit(catalog, item_ids, n_price_bands=2)
    assert len(features.categories) == 2 and features.n_price_bands == 2
    side = features.encode(catalog.set_index("item_id").reindex(item_ids))
    assert side[:, 0].tolist() == [2, 1, 0, 2, 0]  # toys, books, none, toys, not in the catalog
    assert side[:, 1].tolist() == [1, 2, 2, 0, 0]  # below / above the median log price; unknown prices are 0
    # Stored with the model, the encoding gives a new item the bands and categories the model was trained on.
    again = ItemFeatures.from_json(features.to_json())
    assert again == features
    new = pd.DataFrame({"category": ["books", "garden"], "price": [50.0, -1.0]})
    assert again.encode(new).tolist() == [[1, 2], [0, 0]]


def test_cold_items_are_represented_by_text_and_side_features_alone():
    text = torch.randn(4, 8)
    side = torch.tensor([[0, 0], [1, 1], [2, 1], [1, 2]])
    model = HybridRanker(RankerConfig(n_items=3, text_dim=8, dim=4, n_categories=2, n_price_bands=2), text, torch.tensor([False, True, True, False]), side)
    before = model.items(torch.tensor([3, 1])).detach().clone()
    with torch.no_grad():
        model.item_id.weight += 1.0
    after = model.items(torch.tensor([3, 1])).detach()
    assert torch.equal(before[0], after[0]) and not torch.equal(before[1], after[1])
    # Hiding IDs makes a warm item look like a cold one: text and side features only.
    hidden = model.items(torch.tensor([1]), hide_ids=torch.ones(4, dtype=torch.bool)).detach()
    expected = model.text_proj(text[1:2]) + model.category(side[1:2, 0]) + model.price_band(side[1:2, 1])
    assert torch.allclose(hidden, expected.detach())
    model.eval()
    season = torch.from_numpy(season_features(pd.to_datetime(["2025-06-01"], utc=True)))
    scores = model(torch.tensor([[0, 0, 0], [0, 1, 2]]), season)
    assert scores.shape == (2, 4) and torch.isfinite(scores).all()


def test_a_saved_ranker_loads_back_to_the_same_scores_without_pickle(tmp_path):
    config = RankerConfig(n_items=3, text_dim=8, dim=4, n_categories=2, n_price_bands=2)
    model = HybridRanker(config, torch.randn(4, 8), torch.tensor([False, True, True, False]), torch.tensor([[0, 0], [1, 1], [2, 1], [1, 2]]))
    folder = save_ranker(model, tmp_path / "ranker", ["a", "b", "c"])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "features.json", "items.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["n_categories"] == 2
    loaded, items = load_ranker(folder)
    assert items == ["a", "b", "c"] and loaded.config == config
    histories, season = np.array([[0, 1, 2], [0, 0, 3]]), window_season(pd.Timestamp("2025-01-01"), pd.Timestamp("2025-02-01"))
    assert np.array_equal(score(model, histories, season), score(loaded, histories, season))


def test_model_inputs_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="item_text"):
        HybridRanker(RankerConfig(n_items=3, text_dim=8), torch.randn(3, 8), torch.zeros(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="item_side"):
        HybridRanker(RankerConfig(n_items=3, text_dim=8), torch.randn(4, 8), torch.zeros(4, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.long))


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
    season = window_season(split.cut, pd.Timestamp("2025-03-02", tz="UTC"))
    means, _ = evaluate(score(first.model, histories, season), split.candidates, split.targets, ks=(5,))
    assert means["hitrate@5"] >= 0.9  # the target's group is ranked first; random would give about 0.3
    with_validation = fit(train, split.item_ids, item_vectors, config, train_config, validation=Validation(split, histories, season))
    assert 1 <= with_validation.best_epoch <= len(with_validation.epochs)
    assert all("val_ndcg@20" in e for e in with_validation.epochs)


def test_cold_items_are_ranked_from_their_text():
    """Half of each group's items are never bought in train; the text still places them with their group."""
    purchases, items, vectors = grouped_purchases(seed=1)
    cold = set(items[[0, 1, 2, 10, 11, 12]])
    train = purchases[(purchases["ts"] < pd.Timestamp("2025-02-01", tz="UTC")) & ~purchases["item_id"].isin(cold)]
    split = temporal_split(pd.concat([train, purchases[purchases["ts"] >= pd.Timestamp("2025-02-01", tz="UTC")]]), "2025-02-01")
    assert set(split.item_ids[split.cold_items]) <= cold and split.cold_items.any()
    config = RankerConfig(n_items=len(split.item_ids), text_dim=8, dim=16, history=10, id_dropout=0.5)
    item_vectors = pd.DataFrame(vectors, index=items).loc[split.item_ids].to_numpy()
    result = fit(train, split.item_ids, item_vectors, config, TrainConfig(epochs=20, batch_size=64, lr=1e-2, threads=1))
    scores = score(result.model, split_histories(split, train, config.history), window_season(split.cut, pd.Timestamp("2025-03-02", tz="UTC")))
    candidates, targets = split.cold_only()
    means, _ = evaluate(scores[split.cold_rows], candidates, targets, ks=(3,))
    assert means["hitrate@3"] >= 0.9  # 3 of 6 cold items are the group's own: chance is about 0.5


def test_items_launched_after_an_example_do_not_compete_in_it():
    """Ten items are sold from January; ten more launch on 1 March, and everybody's next purchase is one of them.
    Counted as negatives in every January and February example, the new items all end up below the old ones (hit
    rate@3 0 here); with their launch dates they only compete from March, and come back into the top 3 (0.26)."""
    rng = np.random.default_rng(0)
    items = np.array([f"i{k:02d}" for k in range(20)], dtype=object)
    launch = pd.Timestamp("2025-03-01", tz="UTC")
    rows = []
    for u in range(80):
        for day, item in enumerate(rng.choice(items[:10], size=6, replace=False)):
            rows.append((f"u{u}", item, pd.Timestamp("2025-01-01", tz="UTC") + pd.Timedelta(days=day * 9)))
        rows.append((f"u{u}", rng.choice(items[10:]), launch + pd.Timedelta(days=int(rng.integers(0, 20)))))
        rows.append((f"u{u}", rng.choice(items[10:]), pd.Timestamp("2025-04-01", tz="UTC")))
    purchases = pd.DataFrame(rows, columns=["user_id", "item_id", "ts"])
    split = temporal_split(purchases, "2025-03-25")
    train = purchases[purchases["ts"] < split.cut]
    first_seen = pd.Series([pd.Timestamp("2025-01-01", tz="UTC")] * 10 + [launch] * 10, index=items).loc[split.item_ids]
    vectors = rng.normal(size=(len(split.item_ids), 8)).astype(np.float32)  # text says nothing
    config, train_config = RankerConfig(n_items=len(split.item_ids), text_dim=8, dim=16, history=10, seasonal=False), TrainConfig(epochs=10, batch_size=64, lr=1e-2, threads=1)
    histories = split_histories(split, train, config.history)
    season = window_season(split.cut, pd.Timestamp("2025-04-02", tz="UTC"))

    def hitrate(**launches):
        model = fit(train, split.item_ids, vectors, config, train_config, **launches).model
        return evaluate(score(model, histories, season), split.candidates, split.targets, ks=(3,))[0]["hitrate@3"]

    with pytest.raises(ValueError, match="item_first_seen"):
        fit(train, split.item_ids, vectors, config, train_config, item_first_seen=epoch_seconds(first_seen)[:5])
    assert hitrate(item_first_seen=epoch_seconds(first_seen)) >= hitrate() + 0.1
