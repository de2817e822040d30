"""Training the hybrid ranker: next-new-item prediction from each user's purchase history.

Examples: for every user, items in the order first bought; each item after the first is a target, the items before it
(the most recent `history` of them) its history. Loss: softmax over the batch's targets (in-batch negatives) with the
logQ correction, so popular items are not favoured merely for appearing often as negatives. Early stopping on a
validation split's NDCG@20; deterministic under a seed on the CPU.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from rec_pipeline.evaluation import Split
from rec_pipeline.metrics import evaluate
from rec_pipeline.ranker.model import HybridRanker, RankerConfig


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 512
    lr: float = 2e-3
    weight_decay: float = 0.0
    patience: int = 3  # epochs without a better validation NDCG@20 before stopping
    seed: int = 0
    threads: int = 0


@dataclass
class TrainResult:
    model: HybridRanker
    best_epoch: int
    epochs: list[dict] = field(default_factory=list)  # per epoch: loss, validation ndcg@20, seconds
    examples: int = 0

    @property
    def examples_per_s(self) -> float:
        seconds = sum(e["seconds"] for e in self.epochs)
        return self.examples * len(self.epochs) / seconds if seconds else 0.0


def first_purchases(purchases: pd.DataFrame, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per user, the model indices (1-based) of the items they bought, in the order first bought."""
    index = pd.Index(item_ids)
    data = purchases[purchases["item_id"].isin(index)].sort_values(["user_id", "ts"], kind="stable")
    data = data.drop_duplicates(["user_id", "item_id"])
    items = index.get_indexer(data["item_id"]) + 1
    users = data["user_id"].to_numpy()
    bounds = np.flatnonzero(np.r_[True, users[1:] != users[:-1], True])
    return {users[a]: items[a:b] for a, b in zip(bounds[:-1], bounds[1:])}


def history_matrix(sequences: list[np.ndarray], length: int) -> np.ndarray:
    """Each sequence's last `length` items, left-padded with 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = seq[-length:]
        if len(tail):
            out[row, -len(tail) :] = tail
    return out


def training_examples(sequences: dict[str, np.ndarray], length: int) -> tuple[np.ndarray, np.ndarray]:
    histories, targets = [], []
    for seq in sequences.values():
        for position in range(1, len(seq)):
            histories.append(seq[max(0, position - length) : position])
            targets.append(seq[position])
    return history_matrix(histories, length), np.array(targets, dtype=np.int64)


def split_histories(split: Split, purchases_before_cut: pd.DataFrame, length: int) -> np.ndarray:
    """History rows for the split's test users, from what they bought before the cut."""
    sequences = first_purchases(purchases_before_cut, split.item_ids)
    return history_matrix([sequences.get(split.user_ids[r], np.zeros(0, np.int64)) for r in split.test_rows], length)


def score(model: HybridRanker, histories: np.ndarray, batch: int = 1024) -> np.ndarray:
    """(users x items) scores in the split's column order (model item i + 1 is column i)."""
    model.eval()
    with torch.inference_mode():
        table = model.all_items()
        rows = [model.users(torch.from_numpy(histories[i : i + batch]), table) @ table[1:].T for i in range(0, len(histories), batch)]
    return torch.cat(rows).numpy() if rows else np.zeros((0, model.config.n_items), np.float32)


def fit(
    purchases: pd.DataFrame,
    item_ids: np.ndarray,
    item_vectors: np.ndarray,
    model_config: RankerConfig,
    config: TrainConfig = TrainConfig(),
    validation: tuple[Split, np.ndarray] | None = None,
    max_epochs: int | None = None,
) -> TrainResult:
    """Train on `purchases` (user_id, item_id, ts); with `validation` (split, histories) stop early on its NDCG@20."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    sequences = first_purchases(purchases, item_ids)
    histories, targets = training_examples(sequences, model_config.history)
    if len(targets) == 0:
        raise ValueError("no user bought two items: nothing to learn from")
    warm = np.zeros(len(item_ids) + 1, dtype=bool)
    warm[np.unique(np.concatenate(list(sequences.values())))] = True
    text = np.vstack([np.zeros((1, item_vectors.shape[1]), np.float32), item_vectors])
    model = HybridRanker(model_config, torch.from_numpy(text), torch.from_numpy(warm))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # logQ: how often each item turns up as an in-batch negative is proportional to how often it is a target.
    frequency = np.bincount(targets, minlength=len(item_ids) + 1) / len(targets)
    log_q = torch.from_numpy(np.log(np.maximum(frequency, 1e-12)).astype(np.float32))

    result = TrainResult(model=model, best_epoch=0, examples=len(targets))
    best_ndcg, best_state, stale = -1.0, None, 0
    for epoch in range(1, (max_epochs or config.epochs) + 1):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(targets))
        total = 0.0
        for start in range(0, len(order), config.batch_size):
            rows = order[start : start + config.batch_size]
            batch_targets = torch.from_numpy(targets[rows])
            hide = torch.from_numpy(rng.random(len(rows)) < model_config.id_dropout)
            users = model.users(torch.from_numpy(histories[rows]), model.all_items())
            logits = users @ model.items(batch_targets, hide).T - log_q[batch_targets]
            # The same item twice in a batch is not a negative for itself.
            same = batch_targets.unsqueeze(0) == batch_targets.unsqueeze(1)
            logits = logits.masked_fill(same & ~torch.eye(len(rows), dtype=torch.bool), float("-inf"))
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(rows)))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(rows)
        record = {"epoch": epoch, "loss": total / len(targets), "seconds": time.perf_counter() - started}
        if validation is not None:
            split, val_histories = validation
            means, _ = evaluate(score(model, val_histories), split.candidates, split.targets, ks=(20,))
            record["val_ndcg@20"] = means["ndcg@20"]
            if means["ndcg@20"] > best_ndcg:
                best_ndcg, best_state, stale, result.best_epoch = means["ndcg@20"], copy.deepcopy(model.state_dict()), 0, epoch
            else:
                stale += 1
        result.epochs.append(record)
        if validation is not None and stale >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = len(result.epochs)
    return result
