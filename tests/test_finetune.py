"""Fine-tuning the encoder's top: the cached bottom reproduces the whole model, the loss against a brute-force
reference, co-purchase pairs by hand, and a fine-tuned folder that is an ordinary model (ONNX behind the parity gate)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from rec_pipeline.encoders import DEFAULT_MODEL, EncoderConfig, TextEncoder, model_folder
from rec_pipeline.finetune import (
    FINETUNE_FILE, EncoderTop, FinetuneConfig, _batch, _pair_loss, bottom_states, copurchase_pairs, finetune_top, finetuned_encoder,
)

TEXTS = ["white hanging heart t-light holder", "red hanging heart t-light holder", "set of 3 cake tins pantry design",
         "jumbo bag red retrospot", "lunch bag pink polkadot", "USB-C cable, braided, 2 m", "scented soy wax candle", "x"]


@pytest.fixture(scope="module")
def base():
    encoder = TextEncoder(EncoderConfig(threads=2, backend="torch"))
    encoder.tokenizer = AutoTokenizer.from_pretrained(str(encoder.folder))
    return encoder, encoder._torch_model()


@pytest.mark.parametrize("top_layers", [1, 3])
def test_the_top_on_cached_bottom_states_is_the_whole_model(base, top_layers):
    encoder, model = base
    top = EncoderTop(model, top_layers, "mean").eval()
    states = bottom_states(encoder, model, TEXTS, top.first)
    with torch.no_grad():
        ours = top(*_batch(states, np.arange(len(TEXTS)))).numpy()  # padded to the longest text, as a batch is
    encoder.model = model
    whole = encoder._torch_batch(*encoder._pad(encoder.tokenizer(TEXTS)["input_ids"]))
    assert np.abs(ours - whole).max() < 1e-5


def test_the_top_is_refused_for_impossible_layer_counts(base):
    for bad in (0, 7):
        with pytest.raises(ValueError, match="top_layers must be 1..6"):
            EncoderTop(base[1], bad, "mean")


def test_pair_loss_matches_a_brute_force_reference():
    rng = np.random.default_rng(0)
    left, right = torch.tensor([0, 1, 2, 1]), torch.tensor([5, 6, 5, 2])  # right 5 twice; right 2 is left 2
    logits = torch.from_numpy(rng.normal(size=(4, 4)))
    expected = []
    for scores, anchors, partners in ((logits, left, right), (logits.T, right, left)):
        losses = []
        for i in range(4):
            keep = [j for j in range(4) if j == i or (partners[j] != partners[i] and partners[j] != anchors[i])]
            row = scores[i, keep]
            losses.append(float(-(row[keep.index(i)] - torch.logsumexp(row, 0))))
        expected.append(np.mean(losses))
    assert float(_pair_loss(logits, left, right)) == pytest.approx(np.mean(expected), rel=1e-9)


def test_copurchase_pairs_follow_each_customers_order_within_the_window():
    purchases = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u1", "u2", "u2", "u3"],
        "item_id": ["a", "b", "a", "c", "c", "zz", "b"],  # u1 buys a again (kept once); zz is not in the catalog
        "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-01", "2024-01-02", "2024-01-01"]),
    })
    pairs = copurchase_pairs(purchases, ["a", "b", "c"], window=1)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 2)]
    pairs = copurchase_pairs(purchases, ["a", "b", "c"], window=3)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 2), (1, 2)]


def test_a_finetuned_top_is_an_ordinary_model_folder_behind_the_parity_gate(tmp_path):
    pairs = np.array([[0, 1], [3, 4], [2, 6], [0, 1], [3, 4]])
    config = FinetuneConfig(top_layers=1, steps=12, batch_pairs=4, lr=1e-4, threads=2)
    folder = finetune_top(TEXTS, pairs, tmp_path / "tuned", config)
    record = json.loads((folder / FINETUNE_FILE).read_text())
    base_encoder = TextEncoder(EncoderConfig(threads=2, backend="torch"))
    assert record["base_weights_sha256"] == base_encoder.weights_sha256 and record["pairs"] == 5
    assert record["loss_last_10"] < record["loss_first_10"]

    # Only the top layer moved.
    before, after = load_file(str(model_folder(DEFAULT_MODEL) / "model.safetensors")), load_file(str(folder / "model.safetensors"))
    assert set(after) <= set(before)  # the base file also holds the position_ids buffer
    moved = {name for name in after if not torch.equal(before[name], after[name])}
    assert moved and all(".layer.5." in name for name in moved)

    tuned = TextEncoder(EncoderConfig(model=str(folder), threads=2), onnx_dir=tmp_path / "onnx")
    vectors, base_vectors = tuned.encode(TEXTS), base_encoder.encode(TEXTS)
    assert tuned.describe()["onnx_parity_max_abs_diff"] <= 1e-4 and tuned.fingerprint != base_encoder.fingerprint
    # The pairs it was trained on came closer.
    for a, b in [(3, 4), (2, 6)]:
        assert vectors[a] @ vectors[b] > base_vectors[a] @ base_vectors[b]


def test_finetuned_encoder_trains_once_per_inputs_and_refuses_no_pairs(tmp_path):
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"], "title": TEXTS[:3], "description": "", "category": "", "brand": ""})
    purchases = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2"], "item_id": ["a", "b", "b", "c"],
                              "ts": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-02"])})
    config = FinetuneConfig(top_layers=1, steps=2, batch_pairs=2, threads=2)
    folder = finetuned_encoder(purchases, catalog, tmp_path, config)
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert finetuned_encoder(purchases, catalog, tmp_path, config) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert finetuned_encoder(purchases.iloc[:2], catalog, tmp_path, config) != folder  # other pairs, another model
    with pytest.raises(ValueError, match="no co-purchase pairs"):
        finetuned_encoder(purchases.iloc[[0, 2]], catalog, tmp_path, config)
