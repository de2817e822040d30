"""Freeze the bottom, fine-tune the top: the encoder's last `top_layers` transformer layers, trained on what the shop's
customers bought together, so that items bought together get nearby text vectors. A cold item has only its text; a
text space shaped by co-purchases places it beside the items its buyers will have bought.

Affordable on 2 CPU cores because the frozen layers run once: every item's token states after the frozen bottom are
computed a single time and kept, and each step runs only the top layers (forward and backward) on them: about a
second a step of 256 pairs with one layer trained on all-MiniLM-L6-v2, twice that with two (BENCHMARKS.md).

Settings, chosen on the validation window of the 2011-09-01 cut (content-kNN's cold Recall@20 there, frozen 0.577):
one layer, 150 steps at lr 5e-5 scored 0.709; 50 steps at 2e-5, 5e-5 and 1e-4 scored 0.568, 0.610 and 0.655; two
layers for 50 steps at 5e-5, 0.699 for twice the time a step. Whether the ranker gains is `python -m bench.finetune`'s
question (BENCHMARKS.md, "Fine-tuning the encoder's top").

Objective: in-batch contrastive (InfoNCE, both directions) over pairs of items one customer bought in sequence; the
other items of the batch are the negatives, except copies of the pair's own items.

The result is an ordinary model folder (safetensors weights, config, tokenizer, and `finetune.json` saying what it was
trained from and on), so `EncoderConfig(model=folder)` runs it like any other model: ONNX export behind the encoder's
parity gate, the per-fingerprint embedding cache, the service's encoder for new items.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rec_pipeline.encoders import EncoderConfig, TextEncoder, _pooled, clean_text
from rec_pipeline.storage import atomic_folder

FINETUNE_FILE = "finetune.json"


@dataclass(frozen=True)
class FinetuneConfig:
    top_layers: int = 0  # transformer layers trained (the rest stay frozen); 0: the frozen encoder, no fine-tuning
    steps: int = 150  # the learning rate decays linearly to zero over them
    batch_pairs: int = 256  # pairs per step: up to 512 item texts through the top layers
    lr: float = 5e-5
    temperature: float = 0.05
    window: int = 3  # each item a customer bought is paired with the next `window` items they bought
    seed: int = 0
    threads: int = 0


def copurchase_pairs(purchases: pd.DataFrame, item_ids, window: int) -> np.ndarray:
    """(n, 2) row indices into `item_ids`: each item a customer bought (in the order first bought) with each of the
    next `window` distinct items they bought. Items outside `item_ids` are left out."""
    index = pd.Index(item_ids)
    data = purchases[purchases["item_id"].isin(index)].sort_values(["user_id", "ts"], kind="stable")
    data = data.drop_duplicates(["user_id", "item_id"])
    items = index.get_indexer(data["item_id"])
    users = data["user_id"].to_numpy()
    pairs = []
    for offset in range(1, window + 1):
        same_user = users[offset:] == users[:-offset]
        pairs.append(np.stack([items[:-offset][same_user], items[offset:][same_user]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), np.int64)


class EncoderTop(torch.nn.Module):
    """The top layers of a BERT-family encoder and its pooling, run on cached token states of the layers below."""

    def __init__(self, model: torch.nn.Module, top_layers: int, pooling: str):
        super().__init__()
        layers = getattr(getattr(model, "encoder", None), "layer", None)
        if layers is None:
            raise ValueError(f"fine-tuning the top needs a BERT-family encoder (model.encoder.layer); {type(model).__name__} is not one")
        if not 0 < top_layers <= len(layers):
            raise ValueError(f"top_layers must be 1..{len(layers)} for this model, got {top_layers}")
        self.first = len(layers) - top_layers  # hidden_states[first] is what the top's first layer reads
        self.layers = torch.nn.ModuleList(layers[self.first :])
        self.pooling = pooling

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # The additive mask BERT's eager and SDPA attention both take: 0 where attended, the dtype's minimum elsewhere.
        additive = (1.0 - mask[:, None, None, :].to(states.dtype)) * torch.finfo(states.dtype).min
        hidden = states
        for layer in self.layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        return _pooled(hidden, mask, self.pooling)


def bottom_states(encoder: TextEncoder, model: torch.nn.Module, texts: list[str], first: int, batch_size: int = 64) -> list[torch.Tensor]:
    """Each text's token states after the frozen bottom (unpadded, (tokens, hidden) float32), computed once."""
    ids = encoder.tokenizer([encoder.config.prefix + clean_text(t) for t in texts], truncation=True,
                            max_length=encoder.config.max_length, return_attention_mask=False)["input_ids"]
    states: list[torch.Tensor] = [None] * len(ids)  # type: ignore[list-item]
    order = np.argsort([len(x) for x in ids], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, attention_mask = encoder._pad([ids[i] for i in rows])
            device = next(model.parameters()).device
            hidden = model(input_ids=torch.from_numpy(input_ids).to(device), attention_mask=torch.from_numpy(attention_mask).to(device),
                           output_hidden_states=True).hidden_states[first]
            for row, i in enumerate(rows):
                states[i] = hidden[row, : len(ids[i])].clone()
    return states


def _batch(states: list[torch.Tensor], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(states[r]) for r in rows)
    hidden = torch.zeros(len(rows), width, states[0].shape[1], device=states[0].device)
    mask = torch.zeros(len(rows), width, dtype=torch.int64, device=states[0].device)
    for i, r in enumerate(rows):
        hidden[i, : len(states[r])] = states[r]
        mask[i, : len(states[r])] = 1
    return hidden, mask


def _pair_loss(logits: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """InfoNCE both ways over a batch of pairs (logits[i, j]: left i against right j). A candidate that is a copy of
    the anchor's own partner, or of the anchor itself, is not a negative."""
    target = torch.arange(len(left), device=logits.device)

    def one_way(scores, anchors, partners):
        clash = (partners[None, :] == partners[:, None]) | (partners[None, :] == anchors[:, None])
        clash.fill_diagonal_(False)
        return torch.nn.functional.cross_entropy(scores.masked_fill(clash, float("-inf")), target)

    return (one_way(logits, left, right) + one_way(logits.T, right, left)) / 2


def finetune_top(
    texts: list[str], pairs: np.ndarray, out: str | Path, config: FinetuneConfig = FinetuneConfig(),
    encoder_config: EncoderConfig = EncoderConfig(),
) -> Path:
    """Fine-tune the top `config.top_layers` of `encoder_config`'s model on co-purchase `pairs` (rows of `texts`) and
    write the whole model to the folder `out`."""
    if len(pairs) == 0:
        raise ValueError("no co-purchase pairs to fine-tune on: no customer bought two catalog items")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    encoder = TextEncoder(encoder_config)
    if config.threads:
        torch.set_num_threads(config.threads)
    from transformers import AutoTokenizer

    encoder.tokenizer = AutoTokenizer.from_pretrained(str(encoder.folder))
    device = encoder.device  # the GPU where there is one: the bottom's states and the top's steps run there
    model = encoder._torch_model().to(device)
    top = EncoderTop(model, config.top_layers, encoder_config.pooling)
    used = np.unique(pairs)
    states = dict(zip(used, bottom_states(encoder, model, [texts[i] for i in used], top.first)))
    cached = time.perf_counter()
    dense = [states[i] for i in used]  # pairs re-indexed into `used`
    position = {item: k for k, item in enumerate(used)}
    local = np.vectorize(position.get)(pairs)

    for p in model.parameters():
        p.requires_grad_(False)
    trained = [p for p in top.parameters()]
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / config.steps)
    top.train()
    losses = []
    for _ in range(config.steps):
        batch = local[rng.integers(0, len(local), min(config.batch_pairs, len(local)))]
        rows, inverse = np.unique(batch.reshape(-1), return_inverse=True)
        vectors = top(*_batch(dense, rows))
        a, b = vectors[inverse[0::2]], vectors[inverse[1::2]]
        loss = _pair_loss(a @ b.T / config.temperature, torch.from_numpy(batch[:, 0]).to(device), torch.from_numpy(batch[:, 1]).to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    model.eval().cpu()

    record = {
        "base_model": encoder_config.model,
        "base_weights_sha256": encoder.weights_sha256,
        "config": asdict(config),
        "pairs": int(len(pairs)),
        "pairs_sha256": hashlib.sha256(np.ascontiguousarray(pairs, dtype=np.int64).tobytes()).hexdigest(),
        "items": int(len(used)),
        "loss_first_10": round(float(np.mean(losses[:10])), 4),
        "loss_last_10": round(float(np.mean(losses[-10:])), 4),
        "cache_seconds": round(cached - started, 1),
        "train_seconds": round(time.perf_counter() - cached, 1),
    }
    with atomic_folder(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        encoder.tokenizer.save_pretrained(tmp)
        (tmp / FINETUNE_FILE).write_text(json.dumps(record, indent=2))
    return Path(out)


def finetuned_encoder(
    purchases: pd.DataFrame, catalog: pd.DataFrame, models_dir: str | Path, config: FinetuneConfig,
    encoder_config: EncoderConfig = EncoderConfig(), text=None,
) -> Path:
    """The encoder fine-tuned on `purchases` over `catalog`'s item texts, in `models_dir`/finetuned/<key>: trained
    once per (base weights, settings, texts, pairs); a later call with the same inputs reuses the folder."""
    from rec_pipeline.embeddings import ItemTextConfig, item_texts

    texts = item_texts(catalog, text or ItemTextConfig()).tolist()
    pairs = copurchase_pairs(purchases, catalog["item_id"], config.window)
    identity = hashlib.sha256()
    identity.update(TextEncoder(encoder_config).fingerprint.encode())
    identity.update(json.dumps({k: v for k, v in asdict(config).items() if k != "threads"}, sort_keys=True).encode())
    identity.update("\n".join(texts).encode("utf-8", errors="surrogatepass"))
    identity.update(np.ascontiguousarray(pairs, dtype=np.int64).tobytes())
    folder = Path(models_dir) / "finetuned" / identity.hexdigest()[:16]
    if not (folder / FINETUNE_FILE).exists():
        finetune_top(texts, pairs, folder, config, encoder_config)
    return folder


def finetune_record(folder: str | Path) -> dict:
    return json.loads((Path(folder) / FINETUNE_FILE).read_text())
