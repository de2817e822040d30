"""Training the hybrid ranker: next-new-item prediction from each user's purchase history.

Examples: for every user, items in the order first bought; each item after the first is a target, the items before it
(the most recent `history` of them) its history, and the day it was bought sets the season. Loss: softmax over the
whole catalog, the history's items excluded (they are never candidates at serving time either). Measured on Online
Retail, this beat in-batch negatives with the logQ correction by a wide margin at catalog sizes where every item fits
in a batch. Deterministic under a seed on the CPU.

Items not yet listed when an example happened (first seen after it) are not in its softmax: nobody could have bought
them then. Left in, they were negatives for every example before their launch, which taught the model that recently
launched items are unpopular, exactly the items a season's buyers go for. Excluding them lifted Online Retail's test
NDCG@20 from 0.121 to 0.141 (seed 0; BENCHMARKS.md, "What each design choice measured").

Schedule and early stopping: the learning rate decays linearly to zero over `epochs`, and the epoch kept is the last
one within `tolerance` of the best validation NDCG@20 (training stops `patience` epochs after it). On Online Retail
the validation curve is a noisy plateau from epoch 3 on; taking its argmax picked epochs 3 to 7 depending on the
seed and spread test NDCG@20 by 7%, while the later epochs of a decayed schedule agree across seeds within 1%.
Epoch-to-epoch noise on that plateau reaches 3-4%: with a 1% tolerance, one high epoch (0.1265 at epoch 4 against
0.121-0.123 after it) stopped a run at epoch 7 and kept epoch 4, whose refit scored test NDCG@20 0.116; with 5%
the same run kept epoch 10 and scored 0.122.
"""

from __future__ import annotations

import copy
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from rec_pipeline.evaluation import Split
from rec_pipeline.metrics import evaluate
from rec_pipeline.ranker.model import HybridRanker, ItemFeatures, RankerConfig, season_features, window_season


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # the length of the schedule: the learning rate reaches zero at its end
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs after the kept one before stopping
    tolerance: float = 0.05  # relative: an epoch this close to the best validation NDCG@20 counts as on the plateau
    seed: int = 0
    threads: int = 0
    device: str = "cpu"  # "cuda": bf16 autocast


@dataclass
class Validation:
    """What early stopping scores: a split, its test users' histories, and the season of its test window."""

    split: Split
    histories: np.ndarray
    season: np.ndarray


@dataclass
class TrainResult:
    model: HybridRanker
    best_epoch: int
    epochs: list[dict] = field(default_factory=list)  # per epoch: loss, validation ndcg@20, seconds
    examples: int = 0
    features: ItemFeatures = field(default_factory=ItemFeatures)  # how the catalog became side features (train_ranker)

    @property
    def examples_per_s(self) -> float:
        seconds = sum(e["seconds"] for e in self.epochs)
        return self.examples * len(self.epochs) / seconds if seconds else 0.0


def purchase_sequences(purchases: pd.DataFrame, item_ids: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per user, the model indices (1-based) of the items they bought in the order first bought, and when."""
    index = pd.Index(item_ids)
    data = purchases[purchases["item_id"].isin(index)].sort_values(["user_id", "ts"], kind="stable")
    data = data.drop_duplicates(["user_id", "item_id"])
    if data.empty:
        return {}
    items = index.get_indexer(data["item_id"]) + 1
    times = data["ts"].to_numpy()
    users = data["user_id"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    return {users[a]: (items[a:b], times[a:b]) for a, b in zip(bounds[:-1], bounds[1:])}


def history_matrix(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """Each sequence's last `length` items, left-padded with 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:]
        if len(tail):
            out[row, -len(tail) :] = tail
    return out


def training_examples(sequences: dict[str, tuple[np.ndarray, np.ndarray]], length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Histories (examples x length), targets, the season features of each target's purchase day, and its time
    (epoch seconds)."""
    histories, targets, times = [], [], []
    for items, when in sequences.values():
        # Items of the target's own basket stay in its history: measured on Online Retail, cutting the history at
        # the basket's start lost a quarter of validation NDCG@20 (basket co-occurrence is the strongest signal).
        for position in range(1, len(items)):
            histories.append(items[max(0, position - length) : position])
            targets.append(items[position])
            times.append(when[position])
    stamps = pd.to_datetime(times, utc=True)
    return history_matrix(histories, length), np.array(targets, dtype=np.int64), season_features(stamps), epoch_seconds(stamps)


def epoch_seconds(stamps) -> np.ndarray:
    """int64 seconds since 1970 of UTC timestamps; NaT becomes the int64 minimum."""
    return pd.DatetimeIndex(stamps).as_unit("s").asi8


def split_histories(split: Split, purchases_before_cut: pd.DataFrame, length: int, item_ids: np.ndarray | None = None) -> np.ndarray:
    """History rows for the split's test users, from what they bought before the cut, in the rows of `item_ids`
    (default: the split's own items)."""
    sequences = purchase_sequences(purchases_before_cut, split.item_ids if item_ids is None else item_ids)
    empty = np.zeros(0, np.int64)
    return history_matrix([sequences.get(split.user_ids[r], (empty, None))[0] for r in split.test_rows], length)


def score(model: HybridRanker, histories: np.ndarray, season: np.ndarray, batch: int = 1024) -> np.ndarray:
    """(users x items) scores in the split's column order (model item i + 1 is column i)."""
    model.eval()
    device = model.item_text.device
    with torch.inference_mode():
        table = model.all_items()
        season_t = torch.from_numpy(season).to(device)
        rows = [
            model.logits(model.users(torch.from_numpy(histories[i : i + batch]).to(device), table), table, season_t)[:, 1:].float().cpu()
            for i in range(0, len(histories), batch)
        ]
    return torch.cat(rows).numpy() if rows else np.zeros((0, model.config.n_items), np.float32)


def validation_ndcg(model: HybridRanker, validation: Validation) -> float:
    scores = score(model, validation.histories, validation.season)
    means, _ = evaluate(scores, validation.split.candidates, validation.split.targets, ks=(20,))
    return means["ndcg@20"]


def fit(
    purchases: pd.DataFrame,
    item_ids: np.ndarray,
    item_vectors: np.ndarray,
    model_config: RankerConfig,
    config: TrainConfig = TrainConfig(),
    validation: Validation | None = None,
    max_epochs: int | None = None,
    item_side: np.ndarray | None = None,
    item_first_seen: np.ndarray | None = None,
) -> TrainResult:
    """Train on `purchases` (user_id, item_id, ts) for `max_epochs` (default: all) epochs of the schedule.

    `item_first_seen` (epoch seconds per item, the int64 minimum when unknown) keeps each example's softmax to the
    items listed by then; without it every item competes in every example.
    With `validation`, keep the last epoch within `tolerance` of the best NDCG@20 and stop `patience` epochs after it.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    sequences = purchase_sequences(purchases, item_ids)
    histories, targets, seasons, times = training_examples(sequences, model_config.history)
    if len(targets) == 0:
        raise ValueError("no user bought two items: nothing to learn from")
    warm = np.zeros(len(item_ids) + 1, dtype=bool)
    warm[np.unique(np.concatenate([items for items, _ in sequences.values()]))] = True
    text = np.vstack([np.zeros((1, item_vectors.shape[1]), np.float32), item_vectors])
    side = None if item_side is None else torch.from_numpy(item_side)
    model = HybridRanker(model_config, torch.from_numpy(text), torch.from_numpy(warm), side).to(device)
    listed_from = None
    if item_first_seen is not None:
        if item_first_seen.shape != (len(item_ids),):
            raise ValueError(f"item_first_seen has {item_first_seen.shape} entries for {len(item_ids)} items")
        listed_from = torch.from_numpy(np.r_[np.iinfo(np.int64).min, item_first_seen].astype(np.int64)).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    total_steps = config.epochs * -(-len(targets) // config.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: max(0.0, 1 - step / total_steps))

    result = TrainResult(model=model, best_epoch=0, examples=len(targets))
    best_ndcg, kept_state = -1.0, None
    for epoch in range(1, min(max_epochs or config.epochs, config.epochs) + 1):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(targets))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            history = torch.from_numpy(histories[rows]).to(device)
            target = torch.from_numpy(targets[rows]).to(device)
            hide = torch.from_numpy(rng.random(len(item_ids) + 1) < model_config.id_dropout).to(device)
            with autocast:
                table = model.all_items(hide)
                logits = model.logits(model.users(history, table), table, torch.from_numpy(seasons[rows]).to(device)).float()
            # Padding, what the user already bought and what was not listed yet are never candidates; the target stays one.
            excluded = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, history, True)
            excluded[:, 0] = True
            if listed_from is not None:
                excluded |= listed_from.unsqueeze(0) > torch.from_numpy(times[rows]).to(device).unsqueeze(1)
            excluded[torch.arange(len(rows), device=device), target] = False
            loss = torch.nn.functional.cross_entropy(logits.masked_fill(excluded, float("-inf")), target)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(rows)
        record = {"epoch": epoch, "loss": total / len(targets), "seconds": time.perf_counter() - started}
        if validation is not None:
            record["val_ndcg@20"] = validation_ndcg(model, validation)
            best_ndcg = max(best_ndcg, record["val_ndcg@20"])
            if record["val_ndcg@20"] >= best_ndcg * (1 - config.tolerance):
                kept_state, result.best_epoch = copy.deepcopy(model.state_dict()), epoch
        result.epochs.append(record)
        if validation is not None and epoch - result.best_epoch >= config.patience:
            break
    if kept_state is not None:
        model.load_state_dict(kept_state)
    else:
        result.best_epoch = len(result.epochs)
    return result


def train_ranker(purchases, item_ids: np.ndarray, vectors: pd.DataFrame, catalog, model_config, train_config, validation=None, epochs=None):
    """`fit` over `item_ids`, with their text vectors, side features and first-seen times; the item count and dims come
    from the data."""
    features = ItemFeatures.fit(catalog, item_ids)
    side = np.vstack([np.zeros((1, 2), np.int64), features.encode(catalog.drop_duplicates("item_id").set_index("item_id").reindex(item_ids))])
    first_seen = catalog.drop_duplicates("item_id").set_index("item_id")["first_seen"].reindex(item_ids)
    model_config = replace(model_config, n_items=len(item_ids), text_dim=vectors.shape[1], n_categories=len(features.categories), n_price_bands=features.n_price_bands)
    item_vectors = vectors.loc[item_ids].to_numpy(np.float32)
    result = fit(purchases, item_ids, item_vectors, model_config, train_config, validation, max_epochs=epochs, item_side=side, item_first_seen=epoch_seconds(first_seen))
    result.features = features
    return result


def ranker_validation(split: Split, purchases_before_cut: pd.DataFrame, end: pd.Timestamp, history: int) -> Validation:
    return Validation(split, split_histories(split, purchases_before_cut, history), window_season(split.cut, end))
