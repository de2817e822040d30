"""The ranker split in two towers for live serving, so that `rec-pipeline serve` adds or changes an item without a
retrain: an item side that encodes items the model never saw, and a user side over item tables the service holds.

- `item_encoder.onnx`: (text (n, text_dim) float32, side (n, 2) int64, id_part (n, dim) float32) -> representation
  (n, dim), unit (n, dim), bias (n, b): what `HybridRanker.items` gives an item. A new item has no ID part (zeros);
  a changed one keeps the one it was trained with.
- `user_encoder.onnx`: (history (batch, length) int64 rows, table (rows, dim)) -> the unit user vector (batch, dim):
  the ranker's own user side, with the item table as an input instead of a buffer. The score is then the ranker's,
  `unit @ user / temperature + bias @ season`, one NumPy matrix-vector product over the catalog (`LiveModel.scores`).
  Measured on the demo's 3,000 items: 0.17 ms a request with that product inside the ONNX graph, 0.1 ms this way.
- `item_table.safetensors`: table, unit and bias of the trained items, and `id_part` (the ID embedding each warm
  item adds to its text and side features), so a changed item keeps what the model learned of it.
- `features.json`: the side-feature encoding (`ItemFeatures`) the model was trained with, and `text_encoder.json`
  the text encoder and item-text settings its item vectors were made with (`item_embeddings` writes it).

Both graphs pass a parity gate against PyTorch before they are registered, as `ranker.onnx` does.
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file
from torch import nn

from rec_pipeline.embeddings import ENCODER_SETTINGS_FILE, read_encoder_settings
from rec_pipeline.ranker.export import OPSET, PARITY_TOLERANCE, SERVING_FILE, ParityProbe, ServingScorer, onnx_session, user_vectors
from rec_pipeline.ranker.model import FEATURES_FILE, HybridRanker, ItemFeatures, season_features
from rec_pipeline.storage import atomic_path

ITEM_ENCODER_FILE, USER_ENCODER_FILE, ITEM_TABLE_FILE = "item_encoder.onnx", "user_encoder.onnx", "item_table.safetensors"
LIVE_FILES = (ITEM_ENCODER_FILE, USER_ENCODER_FILE, ITEM_TABLE_FILE, FEATURES_FILE, ENCODER_SETTINGS_FILE)


class ItemEncoder(nn.Module):
    def __init__(self, model: HybridRanker):
        super().__init__()
        self.text_proj = copy.deepcopy(model.text_proj)
        self.category = copy.deepcopy(model.category)
        self.price_band = copy.deepcopy(model.price_band)
        self.item_bias = copy.deepcopy(model.item_bias)

    def forward(self, text: torch.Tensor, side: torch.Tensor, id_part: torch.Tensor):
        rep = self.text_proj(text) + self.category(side[:, 0]) + self.price_band(side[:, 1]) + id_part
        return rep, nn.functional.normalize(rep, dim=-1), self.item_bias(rep)


class UserEncoder(nn.Module):
    def __init__(self, scorer: ServingScorer):
        super().__init__()
        self.config = scorer.config
        self.history_size = copy.deepcopy(scorer.history_size)
        self.attention = copy.deepcopy(scorer.attention)
        self.user_linear = copy.deepcopy(scorer.user_linear)

    def forward(self, history, table):
        return nn.functional.normalize(user_vectors(self, history, table), dim=-1)


def live_scores(user_unit: np.ndarray, tables: "ItemTables", season: np.ndarray, temperature: float) -> np.ndarray:
    """(rows,) the ranker's scores of every table row for one unit user vector: cosine / temperature + seasonal bias."""
    return tables.unit @ (user_unit / np.float32(temperature)) + tables.bias @ season[0, : tables.bias.shape[1]]


def _export(module: nn.Module, example: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    import onnx

    with atomic_path(path) as tmp, torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on frozen shape checks; the parity probes vary every axis
        torch.onnx.export(module.eval(), example, str(tmp), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)
        onnx.checker.check_model(str(tmp), full_check=True)


def write_live(model: HybridRanker, features: ItemFeatures, encoder_settings: str | Path, folder: str | Path) -> tuple[ItemEncoder, UserEncoder]:
    """Export the item encoder, the live scorer, the trained item tables, the side-feature encoding and the text
    encoder's settings (a copy of `encoder_settings`) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    read_encoder_settings(encoder_settings)  # readable, or the export stops here
    with atomic_path(folder / ENCODER_SETTINGS_FILE) as tmp:
        tmp.write_text(Path(encoder_settings).read_text())
    model = model.eval()
    scorer = ServingScorer(model)
    encoder, users = ItemEncoder(model).eval(), UserEncoder(scorer).eval()
    n, text_dim = 3, model.config.text_dim
    _export(encoder, (torch.zeros(n, text_dim), torch.zeros(n, 2, dtype=torch.int64), torch.zeros(n, model.config.dim)),
            folder / ITEM_ENCODER_FILE, ["text", "side", "id_part"], ["representation", "unit", "bias"],
            {"text": {0: "n"}, "side": {0: "n"}, "id_part": {0: "n"}, "representation": {0: "n"}, "unit": {0: "n"}, "bias": {0: "n"}})
    _export(users, (torch.tensor([[0, 1, 2]]), scorer.item_table[:4]), folder / USER_ENCODER_FILE, ["history", "table"], ["user"],
            {"history": {0: "batch", 1: "length"}, "table": {0: "rows"}, "user": {0: "batch"}})
    with torch.inference_mode():
        cold = model.all_items(hide_ids=torch.ones(model.config.n_items + 1, dtype=torch.bool))
        tables = {"table": scorer.item_table, "unit": scorer.item_unit, "bias": scorer.item_bias, "id_part": scorer.item_table - cold}
    with atomic_path(folder / ITEM_TABLE_FILE) as tmp:
        save_file({k: v.contiguous() for k, v in tables.items()}, tmp)
    with atomic_path(folder / FEATURES_FILE) as tmp:
        tmp.write_text(features.to_json())
    return encoder, users


def live_parity(model: HybridRanker, folder: str | Path, seed: int = 0) -> list[ParityProbe]:
    """ONNX Runtime against PyTorch: the item encoder on 1 and 64 items, as cold items (no ID part, as
    `HybridRanker.items` computes them with IDs hidden) and with the ID part `item_table.safetensors` keeps for them
    (as the model computes them); the user encoder with `live_scores` on empty, short and full-length histories,
    against the serving path's scores of every item."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    model = model.eval()
    n_items, length = model.config.n_items, model.config.history
    encoder = onnx_session(folder / ITEM_ENCODER_FILE)
    probes = []
    hidden = torch.ones(n_items + 1, dtype=torch.bool)
    tables = load_numpy(str(folder / ITEM_TABLE_FILE))
    for n, cold in ((1, True), (64, True), (64, False)):
        ids = torch.from_numpy(rng.integers(1, n_items + 1, size=n))
        id_part = np.zeros((n, model.config.dim), np.float32) if cold else tables["id_part"][ids.numpy()]
        with torch.inference_mode():
            expected = model.items(ids, hide_ids=hidden if cold else None)
            expected_bias = model.item_bias(expected)
        feeds = {"text": model.item_text[ids].numpy(), "side": model.item_side[ids].numpy(), "id_part": id_part}
        got_rep, _, got_bias = encoder.run(None, feeds)
        diff = max(float(np.abs(got_rep - expected.numpy()).max()), float(np.abs(got_bias - expected_bias.numpy()).max()))
        probes.append(ParityProbe(n, 0, "item_encoder_cold" if cold else "item_encoder_warm", n, diff))

    scorer = ServingScorer(model)
    session = onnx_session(folder / USER_ENCODER_FILE)
    item_tables = ItemTables([], tables["table"], tables["unit"], tables["bias"], tables["id_part"])
    everything = torch.arange(n_items + 1)
    cases = {"empty": np.zeros((1, 1), np.int64), "short": rng.integers(1, n_items + 1, size=(1, 3)),
             "long": rng.integers(1, n_items + 1, size=(1, length))}
    for (name, history), day in zip(cases.items(), ["2024-01-15", "2024-06-15", "2024-12-15"]):
        season = season_features(pd.to_datetime([day]))
        with torch.inference_mode():
            expected = scorer(torch.from_numpy(history), everything, torch.from_numpy(season)).numpy()[0]
        user = session.run(None, {"history": history.astype(np.int64), "table": tables["table"]})[0][0]
        got = live_scores(user, item_tables, season, model.config.temperature)
        probes.append(ParityProbe(1, history.shape[1], name, n_items + 1, float(np.abs(got - expected).max())))
    return probes


def check_live_parity(model: HybridRanker, folder: str | Path) -> list[ParityProbe]:
    probes = live_parity(model, folder)
    worst = max(p.max_abs_diff for p in probes)
    if worst > PARITY_TOLERANCE:
        raise ValueError(f"{folder}: the live ONNX graphs differ from PyTorch by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
    with atomic_path(Path(folder) / "live_parity.json") as tmp:
        tmp.write_text(json.dumps({"tolerance": PARITY_TOLERANCE, "probes": [asdict(p) for p in probes]}, indent=2))
    return probes


@dataclass
class ItemTables:
    """The item side the live scorer reads: row 0 pads; row r + 1 is item_ids[r]."""

    item_ids: list[str]
    table: np.ndarray
    unit: np.ndarray
    bias: np.ndarray
    id_part: np.ndarray


class LiveModel:
    """A registered version as the service runs it: the two ONNX sessions, the item tables and the side features."""

    def __init__(self, folder: str | Path, item_ids: list[str], threads: int = 1):
        folder = Path(folder)
        self.folder = folder
        for name in (*LIVE_FILES, SERVING_FILE):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name}: missing (this version predates live serving; rematerialise ranker_onnx)")
        self.encoder = onnx_session(folder / ITEM_ENCODER_FILE, threads)
        self.users = onnx_session(folder / USER_ENCODER_FILE, threads)
        self.features = ItemFeatures.from_json((folder / FEATURES_FILE).read_text())
        self.encoder_config, self.text_config = read_encoder_settings(folder / ENCODER_SETTINGS_FILE)
        raw = load_numpy(str(folder / ITEM_TABLE_FILE))
        if raw["table"].shape[0] != len(item_ids) + 1:
            raise ValueError(f"{folder}: item table has {raw['table'].shape[0]} rows for {len(item_ids)} items")
        self.tables = ItemTables(list(item_ids), raw["table"], raw["unit"], raw["bias"], raw["id_part"])
        serving = json.loads((folder / SERVING_FILE).read_text())
        self.history_length, self.temperature = int(serving["history"]), float(serving["temperature"])

    def encode(self, text_vectors: np.ndarray, rows: pd.DataFrame, id_part: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Representation, unit vector and bias of catalog `rows` (category, price) with their text vectors; `id_part`
        (n, dim) for items the model was trained on, zeros (the default) for new ones."""
        side = self.features.encode(rows)
        if id_part is None:
            id_part = np.zeros((len(rows), self.tables.table.shape[1]), np.float32)
        feeds = {"text": text_vectors.astype(np.float32), "side": side, "id_part": id_part.astype(np.float32)}
        rep, unit, bias = self.encoder.run(None, feeds)
        return rep, unit, bias

    def scores(self, tables: ItemTables, history: np.ndarray, season: np.ndarray) -> np.ndarray:
        """(rows,) scores of every row for one history (item rows, oldest first, already cut to the model's length)."""
        user = self.users.run(None, {"history": history.reshape(1, -1).astype(np.int64), "table": tables.table})[0][0]
        return live_scores(user, tables, season, self.temperature)
