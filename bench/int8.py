"""`python -m bench.int8`: what the int8 text encoder costs cold-start retrieval, cut by cut, with no model trained.

At each rolling-origin cut (the protocol's split, 4-week test windows, the catalog as known at the cut), content-kNN
ranks the cold items for the users with a cold target twice: from the fp32 encoder's vectors and from the int8
encoder's. Both go through the same per-fingerprint cache the pipeline uses. Prints one JSON line:

    {"bench": "int8_cold", "cuts": [{"cut": ..., "fp32": ..., "int8": ..., "ratio": ...}, ...], "mean_ratio": ...}

where the figures are cold-only Recall@20 and the ratio is int8 over fp32. The ranker's own cold Recall@20 with int8
vectors comes from `rec-pipeline evaluate --quantization int8` (it retrains the ranker on them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from rec_pipeline.datasets import load_dataset
from rec_pipeline.evaluation import content_knn_scores, temporal_split
from rec_pipeline.metrics import evaluate
from rec_pipeline.sources.online_retail import shared_copy

CUTS = "2011-08-01,2011-09-01,2011-10-01,2011-11-01"


def cold_recall(dataset, cut: pd.Timestamp, weeks: int) -> float:
    catalog, vectors = dataset.catalog_at(cut)
    split = temporal_split(dataset.positives, cut, end=cut + pd.Timedelta(weeks=weeks), catalog=catalog)
    scores = content_knn_scores(split, vectors.loc[split.item_ids].to_numpy(np.float32))
    candidates, targets = split.cold_only()
    return evaluate(scores[split.cold_rows], candidates, targets, ks=(20,))[0]["recall@20"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.int8", description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", default=CUTS)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    source = shared_copy(Path(__file__).resolve().parents[1])
    datasets = {q: load_dataset("online-retail", args.data_dir, source, args.threads, q) for q in ("none", "int8")}
    cuts = []
    for cut in (pd.Timestamp(c.strip(), tz="UTC") for c in args.cuts.split(",")):
        fp32, int8 = (cold_recall(datasets[q], cut, args.weeks) for q in ("none", "int8"))
        cuts.append({"cut": cut.date().isoformat(), "fp32": round(fp32, 4), "int8": round(int8, 4), "ratio": round(int8 / fp32, 4)})
    print(json.dumps({"bench": "int8_cold", "model": "content_knn", "metric": "cold_recall@20", "weeks": args.weeks, "cuts": cuts,
                      "mean_ratio": round(float(np.mean([c["ratio"] for c in cuts])), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
