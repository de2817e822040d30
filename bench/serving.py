"""`python -m bench.serving`: scoring latency of the exported ranker, ONNX Runtime against PyTorch eager, in one process.

Both run the same scoring path (`rec_pipeline.ranker.export.ServingScorer`: pool the user's history, project it,
score the candidates) on the trained demo model (`data/models/ranker`, and its export in `data/models/ranker_onnx`),
for one user with `--history` items, on 1, 100 and 1,000 candidates, with the same thread count. Calls alternate
between the two runtimes so that neither gets a warmer machine. Prints one JSON line:

    {"bench": "serving", "results": {"1": {"torch": {"p50_us", "p99_us", "requests_per_s"}, "onnxruntime": {...}}, ...},
     "ratio_at_1": ..., "ratio_at_100": ..., "ratio_at_1000": ...}

ratio = PyTorch p50 / ONNX Runtime p50 (above 1: ONNX Runtime is faster).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from rec_pipeline.ranker.export import ONNX_FILE, OUTPUT, ServingScorer, onnx_session
from rec_pipeline.ranker.model import load_ranker, season_features

SIZES = (1, 100, 1000)


def _stats(seconds: list[float]) -> dict:
    micro = np.array(seconds) * 1e6
    return {"p50_us": round(float(np.percentile(micro, 50)), 1), "p99_us": round(float(np.percentile(micro, 99)), 1),
            "requests_per_s": round(float(1e6 / micro.mean()))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("data/models"), help="holds ranker/ and ranker_onnx/")
    parser.add_argument("--history", type=int, default=50, help="items in the user's history")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2000, help="timed calls per runtime and size")
    args = parser.parse_args(argv)
    if not (args.models / "ranker").exists() or not (args.models / "ranker_onnx" / ONNX_FILE).exists():
        sys.exit(f"no trained ranker and ONNX export under {args.models}: run the README's first command first")

    torch.set_num_threads(args.threads)
    model, _ = load_ranker(args.models / "ranker")
    scorer = ServingScorer(model).eval()
    session = onnx_session(args.models / "ranker_onnx" / ONNX_FILE, args.threads)
    rng = np.random.default_rng(0)
    history = rng.integers(1, model.config.n_items + 1, size=(1, min(args.history, model.config.history)), dtype=np.int64)
    season = season_features(["2025-11-20"])

    results = {}
    for size in SIZES:
        candidates = rng.integers(1, model.config.n_items + 1, size=size, dtype=np.int64)
        feeds = {"history": history, "candidates": candidates, "season": season}
        tensors = [torch.from_numpy(a) for a in (history, candidates, season)]
        with torch.inference_mode():
            expected = scorer(*tensors).numpy()
            assert np.abs(session.run([OUTPUT], feeds)[0] - expected).max() <= 1e-5, "the two runtimes disagree"
            for _ in range(100):  # warm-up
                scorer(*tensors)
                session.run([OUTPUT], feeds)
            timings = {"torch": [], "onnxruntime": []}
            for _ in range(args.repeats):
                started = time.perf_counter()
                scorer(*tensors)
                timings["torch"].append(time.perf_counter() - started)
                started = time.perf_counter()
                session.run([OUTPUT], feeds)
                timings["onnxruntime"].append(time.perf_counter() - started)
        results[str(size)] = {name: _stats(t) for name, t in timings.items()}

    ratios = {f"ratio_at_{size}": round(results[str(size)]["torch"]["p50_us"] / results[str(size)]["onnxruntime"]["p50_us"], 2) for size in SIZES}
    print(json.dumps({
        "bench": "serving", "threads": args.threads, "history": history.shape[1], "items": model.config.n_items,
        "results": results, **ratios, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
