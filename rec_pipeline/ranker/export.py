"""Serving export: the ranker's scoring path as ONNX, checked against PyTorch before anything uses it.

`ServingScorer` is the scoring path with the item side computed once: item vectors do not depend on the user, so a
request only gathers and pools the user's history, projects it, and takes one product with the candidates. PyTorch
eager and ONNX Runtime run this same module; the parity gate and `bench.serving` compare the two on it, and a test
checks it against the trained model's own scores.

Bundle folder: `ranker.onnx`, `items.json` (model item i + 1 is items[i]) and `serving.json` (history length,
opset, input and output names, the parity probes it passed).
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
from torch import nn

from rec_pipeline.ranker.model import HybridRanker, history_size_bucket, season_features
from rec_pipeline.storage import atomic_path

ONNX_FILE, ITEMS_FILE, SERVING_FILE = "ranker.onnx", "items.json", "serving.json"
OPSET = 17
PARITY_TOLERANCE = 1e-5  # max |ONNX Runtime - PyTorch| on scores, or the export is refused
INPUTS, OUTPUT = ("history", "candidates", "season"), "scores"


class ServingScorer(nn.Module):
    """(history (batch, length) int64 item rows, 0-padded on the left; candidates (n,) int64 item rows; season
    (batch or 1, 3) float32 from `season_features`) -> scores (batch, n)."""

    def __init__(self, model: HybridRanker):
        super().__init__()
        model = model.eval()
        self.config = model.config
        with torch.no_grad():
            table = model.all_items()
            bias = model.item_bias(table)
        self.register_buffer("item_table", table.detach().clone())
        self.register_buffer("item_unit", nn.functional.normalize(table, dim=-1).detach().clone())
        # Not seasonal: one bias column, which season[:, :1] (always 1) multiplies, so the inputs stay the same.
        self.register_buffer("item_bias", bias.detach().clone())
        self.history_size = copy.deepcopy(model.history_size)
        self.attention = copy.deepcopy(model.attention)
        self.user_linear = copy.deepcopy(model.user_proj[1])  # user_proj[0] is dropout, off when serving

    def forward(self, history: torch.Tensor, candidates: torch.Tensor, season: torch.Tensor) -> torch.Tensor:
        user = user_vectors(self, history, self.item_table)
        cosine = nn.functional.normalize(user, dim=-1) @ self.item_unit[candidates].T
        bias = season[:, : self.item_bias.shape[1]] @ self.item_bias[candidates].T
        return cosine / self.config.temperature + bias


def user_vectors(scorer: nn.Module, history: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """The model's user side over item `table`: pool the history's rows, add the history-size embedding, project.
    `scorer` holds config, history_size, attention and user_linear (ServingScorer, and live.UserEncoder)."""
    present = history > 0
    reps = table[history]
    count = present.sum(dim=1)
    if scorer.config.pooling == "attention":
        logits = scorer.attention(reps).squeeze(-1).masked_fill(~present, float("-inf"))
        pooled = (torch.softmax(logits, dim=-1).nan_to_num(0.0).unsqueeze(-1) * reps).sum(dim=1)
    else:
        # The model's embedding_bag mean, as a weighted sum: the ONNX exporter has no plain op for embedding_bag.
        weights = present.to(reps.dtype) / count.clamp(min=1).to(reps.dtype).unsqueeze(-1)
        pooled = (weights.unsqueeze(-1) * reps).sum(dim=1)
    return scorer.user_linear(pooled + scorer.history_size(history_size_bucket(count)))


def export_onnx(scorer: ServingScorer, path: str | Path) -> Path:
    """TorchScript export (the dynamo exporter needs onnxscript) with dynamic batch, history and candidate axes."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = (
        torch.tensor([[0, 1, 2], [1, 2, 3]], dtype=torch.int64),
        torch.tensor([1, 2, 3, 4], dtype=torch.int64),
        torch.from_numpy(season_features(pd.to_datetime(["2024-06-01", "2024-12-01"]))),
    )
    axes = {"history": {0: "batch", 1: "length"}, "candidates": {0: "n"}, "season": {0: "season_rows"}, "scores": {0: "batch", 1: "n"}}
    with atomic_path(path) as tmp, torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on frozen shape checks; the parity probes vary every axis
        torch.onnx.export(
            scorer.eval(), example, str(tmp), input_names=list(INPUTS), output_names=[OUTPUT],
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def onnx_session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session with every graph optimisation; a clear error for a missing or unreadable file."""
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no ONNX model here (materialise `ranker_onnx` first)")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for every kind of bad file
        raise ValueError(f"{path}: not a loadable ONNX model ({type(error).__name__}: {str(error).splitlines()[0]})") from error


@dataclass(frozen=True)
class ParityProbe:
    batch: int
    history: int  # length of the history axis (0 items present in the "empty" probes)
    history_items: str  # empty | short | long | mixed
    candidates: int
    max_abs_diff: float


def parity_probes(scorer: ServingScorer, session, seed: int = 0) -> list[ParityProbe]:
    """ONNX Runtime against PyTorch on 1, 64 and 1,000 candidates x empty, short and full-length histories, plus a
    batch mixing the three with a season per row."""
    rng = np.random.default_rng(seed)
    n_items, length = scorer.config.n_items, scorer.config.history

    def items(n: int) -> np.ndarray:
        return rng.integers(1, n_items + 1, size=n, dtype=np.int64)

    season = season_features(pd.to_datetime(["2024-11-20"]))
    histories = {"empty": np.zeros((1, 1), np.int64), "short": items(3)[None, :], "long": items(length)[None, :]}
    cases = [(name, h, season, n) for n in (1, 64, 1000) for name, h in histories.items()]
    mixed = np.zeros((3, length), np.int64)
    mixed[1, -3:], mixed[2] = items(3), items(length)
    cases.append(("mixed", mixed, season_features(pd.to_datetime(["2024-01-15", "2024-06-15", "2024-12-15"])), 64))

    probes = []
    for name, history, season_rows, n in cases:
        candidates = items(n)
        with torch.inference_mode():
            expected = scorer(torch.from_numpy(history), torch.from_numpy(candidates), torch.from_numpy(season_rows)).numpy()
        got = session.run([OUTPUT], {"history": history, "candidates": candidates, "season": season_rows})[0]
        if got.shape != expected.shape:
            raise ValueError(f"ONNX Runtime returned scores of shape {got.shape}, PyTorch {expected.shape}")
        probes.append(ParityProbe(history.shape[0], history.shape[1], name, n, float(np.abs(got - expected).max())))
    return probes


def write_bundle(model: HybridRanker, item_ids: list[str], folder: str | Path) -> tuple[Path, ServingScorer]:
    """Export the scoring path and its item ids into `folder`; the parity gate runs separately, on the files."""
    folder = Path(folder)
    scorer = ServingScorer(model)
    export_onnx(scorer, folder / ONNX_FILE)
    with atomic_path(folder / ITEMS_FILE) as tmp:
        tmp.write_text(json.dumps([str(i) for i in item_ids]))
    serving = {
        "history": model.config.history,
        "temperature": model.config.temperature,
        "n_items": model.config.n_items,
        "opset": OPSET,
        "inputs": {"history": "int64 (batch, length), item rows 1..n_items, 0-padded on the left, most recent last",
                   "candidates": "int64 (n,), item rows", "season": "float32 (batch or 1, 3): [1, sin, cos] of the day of year"},
        "output": "scores float32 (batch, n)",
    }
    with atomic_path(folder / SERVING_FILE) as tmp:
        tmp.write_text(json.dumps(serving, indent=2))
    return folder, scorer


def record_parity(folder: str | Path, probes: list[ParityProbe]) -> None:
    """Keep the probes the export passed in serving.json, for whoever loads the bundle later."""
    path = Path(folder) / SERVING_FILE
    serving = json.loads(path.read_text())
    serving["parity"] = {"tolerance": PARITY_TOLERANCE, "probes": [asdict(p) for p in probes]}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(serving, indent=2))


class OnnxRanker:
    """A ranker served by ONNX Runtime: top-K items for a history of item ids.

    Loads a bundle folder (`from_bundle`) or an MLflow model downloaded from the registry (`from_mlflow_model`:
    `model.onnx`, with items.json and serving.json among its extra files).
    """

    def __init__(self, onnx_path: Path, items_path: Path, serving_path: Path, threads: int = 0):
        self.session = onnx_session(onnx_path, threads)
        for path in (items_path, serving_path):
            if not path.exists():
                raise FileNotFoundError(f"{path}: missing beside the ONNX model")
        try:
            self.item_ids = [str(i) for i in json.loads(items_path.read_text())]
            self.history_length = int(json.loads(serving_path.read_text())["history"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{items_path.parent}: unreadable items.json or serving.json ({error})") from error
        self.rows = {item: row + 1 for row, item in enumerate(self.item_ids)}

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 0) -> "OnnxRanker":
        folder = Path(folder)
        return cls(folder / ONNX_FILE, folder / ITEMS_FILE, folder / SERVING_FILE, threads)

    @classmethod
    def from_mlflow_model(cls, folder: str | Path, threads: int = 0) -> "OnnxRanker":
        folder = Path(folder)
        return cls(folder / "model.onnx", folder / "extra_files" / ITEMS_FILE, folder / "extra_files" / SERVING_FILE, threads)

    def score_rows(self, histories: np.ndarray, candidates: np.ndarray, season: np.ndarray, batch: int = 512) -> np.ndarray:
        """(users, n) scores: `histories` (users, length) item rows 0-padded on the left, `candidates` (n,) item rows,
        `season` (1 or users, 3)."""
        histories = histories[:, -self.history_length :].astype(np.int64)
        parts = []
        for start in range(0, len(histories), batch):
            rows_season = season if len(season) == 1 else season[start : start + batch]
            feeds = {"history": histories[start : start + batch], "candidates": candidates.astype(np.int64), "season": rows_season.astype(np.float32)}
            parts.append(self.session.run([OUTPUT], feeds)[0])
        return np.concatenate(parts) if parts else np.zeros((0, len(candidates)), np.float32)

    def recommend(self, history: list[str], k: int = 10, when: pd.Timestamp | None = None) -> pd.DataFrame:
        """Top `k` (item_id, score) for a user whose items, oldest first, are `history`; those items are excluded."""
        unknown = [item for item in history if item not in self.rows]
        if unknown:
            raise KeyError(f"unknown item ids (not in the model's items.json): {', '.join(map(str, unknown[:10]))}")
        rows = np.array([self.rows[item] for item in history], dtype=np.int64)
        recent = rows[-self.history_length :] if len(rows) else np.zeros(1, np.int64)
        candidates = np.setdiff1d(np.arange(1, len(self.item_ids) + 1, dtype=np.int64), rows)
        season = season_features([when if when is not None else pd.Timestamp.now(tz="UTC")])
        scores = self.session.run([OUTPUT], {"history": recent[None, :], "candidates": candidates, "season": season})[0][0]
        top = np.argsort(-scores, kind="stable")[:k]
        return pd.DataFrame({"item_id": [self.item_ids[r - 1] for r in candidates[top]], "score": scores[top]})
