"""The search ranker: LightGBM lambdarank over the retrieved candidates, shipped as ONNX behind a parity gate.

Gradient-boosted trees because the features are a handful of heterogeneous scores (BM25, a cosine, counts, price
gaps) whose interactions matter more than any smooth function of them; lambdarank optimises NDCG directly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rec_pipeline.search.features import FEATURES, PERSONAL_FEATURES
from rec_pipeline.storage import atomic_folder

ONNX_FILE = "search_ranker.onnx"
MODEL_FILE = "search_ranker.lgb.txt"  # LightGBM's own text format: readable, reloadable, and no pickle
PROBES_FILE = "parity_features.safetensors"  # feature rows the parity gate scores with both runtimes
SETTINGS_FILE = "search_ranker_settings.json"
OPSET = 15  # the newest onnxmltools' LightGBM converter writes
PARITY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class SearchRankerConfig:
    num_leaves: int = 15
    learning_rate: float = 0.1
    max_rounds: int = 200
    early_stopping_rounds: int = 20  # on the later part of the validation window
    max_bin: int = 63
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.9
    lambdarank_truncation_level: int = 20
    holdout_fraction: float = 0.3  # the latest share of the window's searches that picks the number of rounds
    personal: bool = True  # False: the same model without the shopper's features (the ablation)
    seed: int = 0
    threads: int = 1

    @property
    def features(self) -> tuple[str, ...]:
        return FEATURES if self.personal else tuple(f for f in FEATURES if f not in PERSONAL_FEATURES)


def feature_columns(names: tuple[str, ...]) -> list[int]:
    return [FEATURES.index(n) for n in names]


def train_search_ranker(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, config: SearchRankerConfig):
    """Rounds picked on the latest `holdout_fraction` of the searches (they are in time order), then refit on all."""
    import lightgbm as lgb

    X = features[:, feature_columns(config.features)]
    params = {
        "objective": "lambdarank", "metric": "ndcg", "eval_at": [10], "num_leaves": config.num_leaves,
        "learning_rate": config.learning_rate, "max_bin": config.max_bin, "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction, "lambdarank_truncation_level": config.lambdarank_truncation_level,
        "label_gain": [0, 1, 3, 7], "seed": config.seed, "deterministic": True, "num_threads": config.threads, "verbose": -1,
    }
    cut_group = int(len(groups) * (1 - config.holdout_fraction))
    cut_row = int(groups[:cut_group].sum())
    fit = lgb.Dataset(X[:cut_row], labels[:cut_row], group=groups[:cut_group])
    hold = lgb.Dataset(X[cut_row:], labels[cut_row:], group=groups[cut_group:], reference=fit)
    tuning = lgb.train(params, fit, config.max_rounds, valid_sets=[hold],
                       callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)])
    rounds = max(int(tuning.best_iteration or config.max_rounds), 1)
    holdout_ndcg = float(tuning.best_score["valid_0"]["ndcg@10"])
    booster = lgb.train(params, lgb.Dataset(X, labels, group=groups), rounds)
    return booster, {"rounds": rounds, "holdout_ndcg@10": holdout_ndcg}


def to_onnx(booster, n_features: int):
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    return onnxmltools.convert_lightgbm(booster, initial_types=[("features", FloatTensorType([None, n_features]))], target_opset=OPSET)


def save_search_ranker(booster, config: SearchRankerConfig, folder: str | Path, probes: np.ndarray, metadata: dict) -> Path:
    """ONNX, LightGBM's text model, the parity probes and the settings (the feature order above all) replace
    `folder` together."""
    from safetensors.numpy import save_file

    names = config.features
    with atomic_folder(Path(folder)) as tmp:
        (tmp / ONNX_FILE).write_bytes(to_onnx(booster, len(names)).SerializeToString())
        booster.save_model(str(tmp / MODEL_FILE))
        save_file({"features": np.ascontiguousarray(probes, dtype=np.float32)}, str(tmp / PROBES_FILE))
        (tmp / SETTINGS_FILE).write_text(json.dumps({"config": asdict(config), "features": list(names), **metadata}, indent=2))
    return Path(folder)


def parity(folder: str | Path) -> tuple[float, int]:
    """Largest |ONNX Runtime - LightGBM| score over the saved probe rows, and how many rows."""
    import lightgbm as lgb
    from safetensors.numpy import load_file

    folder = Path(folder)
    ranker = SearchRanker(folder)
    booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
    probes = load_file(str(folder / PROBES_FILE))["features"]
    diff = np.abs(ranker.scores(probes) - booster.predict(probes[:, ranker.columns]))
    return float(np.max(diff, initial=0.0)), int(len(probes))


class SearchRanker:
    """The ONNX model as serving and evaluation run it: scores for candidate feature rows."""

    def __init__(self, folder: str | Path, threads: int = 1):
        from rec_pipeline.ranker.export import onnx_session

        folder = Path(folder)
        for name in (ONNX_FILE, SETTINGS_FILE):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name}: missing (materialise search_ranker)")
        self.settings = json.loads((folder / SETTINGS_FILE).read_text())
        self.features = tuple(self.settings["features"])
        self.columns = feature_columns(self.features)
        self.session = onnx_session(folder / ONNX_FILE, threads)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(rows,) scores of rows with every FEATURES column."""
        if not len(features):
            return np.zeros(0, np.float32)
        return self.session.run(None, {"features": np.ascontiguousarray(features[:, self.columns], dtype=np.float32)})[0].ravel()
