"""`python -m bench.training`: ranker training speed on Online Retail, side by side with implicit's ALS in one process.

Both fit the protocol's final training data (every purchase before the 2011-09-01 cut) on the same threads. The
ranker trains `--epochs` epochs (default: the whole 10-epoch schedule; validation keeps 9-10 on this data); ALS runs with the
parameters the protocol's grid chooses (64 factors, regularisation 1.0, 15 iterations). Prints one JSON line:

    {"bench": "ranker_training", "examples_per_s": ..., "ranker_seconds": ..., "als_seconds": ..., "ratio": ...}

ratio = ALS seconds / ranker seconds for the whole fit (below 1: the ranker takes longer than ALS).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rec_pipeline.evaluation import ALSParams, als_scores, temporal_split
from rec_pipeline.datasets import DATASETS, load_dataset
from rec_pipeline.ranker.model import RankerConfig
from rec_pipeline.ranker.train import TrainConfig, train_ranker
from rec_pipeline.sources.online_retail import shared_copy

ONLINE_RETAIL = shared_copy(Path(__file__).resolve().parents[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=sorted(DATASETS), default="online-retail")
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    dataset = load_dataset(args.data, args.data_dir, ONLINE_RETAIL, args.threads)
    positives = dataset.positives
    catalog, vectors = dataset.catalog_at(pd.Timestamp(DATASETS[args.data].test_start, tz="UTC"))
    split = temporal_split(positives, DATASETS[args.data].test_start, catalog=catalog)
    before_cut = positives[positives["ts"] < split.cut]

    started = time.perf_counter()
    result = train_ranker(before_cut, split.item_ids, vectors, catalog, RankerConfig(n_items=0), TrainConfig(threads=args.threads), epochs=args.epochs)
    ranker_seconds = time.perf_counter() - started
    started = time.perf_counter()
    als_scores(split, ALSParams(factors=64, regularization=1.0), threads=args.threads)  # fit + score the test users
    als_seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "bench": "ranker_training",
                "dataset": args.data,
                "threads": args.threads,
                "examples": result.examples,
                "epochs": len(result.epochs),
                "examples_per_s": round(result.examples_per_s),
                "seconds_per_epoch": round(float(np.median([e["seconds"] for e in result.epochs])), 2),
                "ranker_seconds": round(ranker_seconds, 1),
                "als_seconds": round(als_seconds, 1),
                "ratio": round(als_seconds / ranker_seconds, 3),
                "torch": torch.__version__,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
