"""An fp16 TensorRT engine from the ranker's ONNX export, and its check against PyTorch (TensorRT 10 API).

Needs the `tensorrt` package and a CUDA GPU; `unavailable_reason` says which is missing, so callers can report it
instead of failing. The engine takes the ONNX inputs with an optimisation profile over batch, history length and
candidate count; it is accepted when its scores are within 1e-2 of PyTorch's and its top 20 agree on >= 99%.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rec_pipeline.ranker.export import INPUTS, OUTPUT, ServingScorer
from rec_pipeline.ranker.model import RankerConfig, season_features
from rec_pipeline.storage import atomic_path

MAX_ABS_DIFF, MIN_TOP20_AGREEMENT = 1e-2, 0.99
MAX_BATCH = 64


def unavailable_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt package is not installed"
    if not torch.cuda.is_available():
        return "no CUDA device visible"
    return None


def _logger():
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


def build_engine(onnx_path: str | Path, engine_path: str | Path, config: RankerConfig) -> Path:
    import tensorrt as trt

    builder = trt.Builder(_logger())
    network = builder.create_network(0)  # explicit batch: the only mode in TensorRT 10
    parser = trt.OnnxParser(network, _logger())
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"{onnx_path}: TensorRT could not parse the ONNX model: {errors}")
    build = builder.create_builder_config()
    build.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    n_items, history = config.n_items, config.history
    profile.set_shape("history", (1, 1), (1, history), (MAX_BATCH, history))
    profile.set_shape("candidates", (1,), (min(1000, n_items),), (n_items,))
    profile.set_shape("season", (1, 3), (1, 3), (MAX_BATCH, 3))
    build.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, build)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see its log above)")
    engine_path = Path(engine_path)
    with atomic_path(engine_path) as tmp:
        tmp.write_bytes(bytes(serialized))
    return engine_path


class TensorRTScorer:
    """Runs an engine on the current CUDA stream, with torch tensors as its buffers."""

    def __init__(self, engine_path: str | Path):
        import tensorrt as trt

        self.trt = trt
        self.engine = trt.Runtime(_logger()).deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"{engine_path}: not a TensorRT engine for this TensorRT version and GPU")
        self.context = self.engine.create_execution_context()

    def __call__(self, history: np.ndarray, candidates: np.ndarray, season: np.ndarray) -> np.ndarray:
        trt = self.trt
        buffers = {}
        for name, array in zip(INPUTS, (history, candidates, season)):
            dtype = trt.nptype(self.engine.get_tensor_dtype(name))  # the parser may narrow int64 to int32
            tensor = torch.from_numpy(np.ascontiguousarray(array.astype(dtype))).cuda()
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
            buffers[name] = tensor
        out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT)), dtype=torch.float32, device="cuda")
        self.context.set_tensor_address(OUTPUT, out.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return out.cpu().numpy()


@dataclass(frozen=True)
class EngineReport:
    max_abs_diff: float
    top20_agreement: float
    tensorrt_version: str

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= MAX_ABS_DIFF and self.top20_agreement >= MIN_TOP20_AGREEMENT


def compare_with_torch(engine_path: str | Path, scorer: ServingScorer, users: int = 64, seed: int = 0) -> EngineReport:
    """Scores of `users` random histories over the whole catalog: max |diff| and the share of PyTorch's top 20 that
    the engine's top 20 contains."""
    import tensorrt as trt

    rng = np.random.default_rng(seed)
    n_items, length = scorer.config.n_items, scorer.config.history
    history = np.zeros((users, length), np.int64)
    for row in range(users):
        size = int(rng.integers(0, length + 1))
        if size:
            history[row, -size:] = rng.integers(1, n_items + 1, size)
    candidates = np.arange(1, n_items + 1, dtype=np.int64)
    season = season_features(pd.to_datetime(["2024-11-20"]))
    with torch.inference_mode():
        expected = scorer.cpu()(torch.from_numpy(history), torch.from_numpy(candidates), torch.from_numpy(season)).numpy()
    got = TensorRTScorer(engine_path)(history, candidates, season)
    top_expected = np.argsort(-expected, axis=1)[:, :20]
    top_got = np.argsort(-got, axis=1)[:, :20]
    agreement = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(top_expected, top_got)])
    return EngineReport(float(np.abs(got - expected).max()), float(agreement), trt.__version__)
