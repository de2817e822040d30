"""`python -m bench.finetune`: the decision on fine-tuning the encoder's top, taken on validation windows only.

At each rolling-origin cut, the validation window is the 4 weeks before it, with train before them and the catalog as
known at their start (the protocol's tuning split; the test window is never read). There the ranker is trained and
early-stopped twice, on the frozen encoder's item vectors and on those of the encoder whose top layers were
fine-tuned on train's co-purchases (`rec_pipeline.finetune`), and content-kNN ranks from each set of vectors too.
Prints one JSON line:

    {"bench": "finetune_validation", "cuts": [{"cut": ..., "frozen": {...}, "finetuned": {...}}, ...], "means": {...}}

with NDCG@20 and cold-only Recall@20 of the ranker and content-kNN per encoder, the fine-tuning's cost, and the mean
ratio (fine-tuned over frozen) of each figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rec_pipeline.datasets import load_dataset
from rec_pipeline.evaluation import content_knn_scores, temporal_split
from rec_pipeline.finetune import FinetuneConfig
from rec_pipeline.protocol import segment_metrics
from rec_pipeline.ranker.model import RankerConfig
from rec_pipeline.ranker.train import TrainConfig, ranker_validation, score, train_ranker
from rec_pipeline.sources.online_retail import shared_copy

CUTS = "2011-08-01,2011-09-01,2011-10-01,2011-11-01"
FIGURES = ("ranker_ndcg@20", "ranker_cold_recall@20", "content_knn_ndcg@20", "content_knn_cold_recall@20")


def validation_figures(split, before, catalog: pd.DataFrame, vectors: pd.DataFrame, cut, threads: int) -> dict:
    model_config = RankerConfig(n_items=0)
    validation = ranker_validation(split, before, cut, model_config.history)
    started = time.perf_counter()
    result = train_ranker(before, split.item_ids, vectors, catalog, model_config, TrainConfig(threads=threads), validation)
    ranker = segment_metrics(score(result.model, validation.histories, validation.season), split)
    knn = segment_metrics(content_knn_scores(split, vectors.loc[split.item_ids].to_numpy(np.float32)), split)
    return {"ranker_ndcg@20": round(ranker["ndcg@20"], 4), "ranker_cold_recall@20": round(ranker["cold_recall@20"], 4),
            "content_knn_ndcg@20": round(knn["ndcg@20"], 4), "content_knn_cold_recall@20": round(knn["cold_recall@20"], 4),
            "ranker_epochs": result.best_epoch, "ranker_seconds": round(time.perf_counter() - started, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.finetune", description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", default=CUTS)
    parser.add_argument("--validation-weeks", type=int, default=4)
    parser.add_argument("--top-layers", type=int, default=1)
    parser.add_argument("--steps", type=int, default=FinetuneConfig.steps)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    dataset = load_dataset("online-retail", args.data_dir, shared_copy(Path(__file__).resolve().parents[1]), args.threads)
    config = FinetuneConfig(top_layers=args.top_layers, steps=args.steps)
    cuts = []
    for cut in (pd.Timestamp(c.strip(), tz="UTC") for c in args.cuts.split(",")):
        start = cut - pd.Timedelta(weeks=args.validation_weeks)
        catalog, frozen = dataset.catalog_at(start)
        split = temporal_split(dataset.positives, start, end=cut, catalog=catalog)
        before = dataset.positives[dataset.positives["ts"] < start]
        started = time.perf_counter()
        finetuned, record = dataset.finetuned_vectors(config, before, catalog)
        finetune_seconds = time.perf_counter() - started
        entry = {"cut": cut.date().isoformat(), "validation_start": start.date().isoformat(),
                 "frozen": validation_figures(split, before, catalog, frozen, cut, args.threads),
                 "finetuned": validation_figures(split, before, catalog, finetuned, cut, args.threads),
                 "finetune": {k: record[k] for k in ("pairs", "items", "loss_first_10", "loss_last_10", "cache_seconds", "train_seconds")}
                 | {"seconds_with_embedding": round(finetune_seconds, 1)}}
        entry["ratios"] = {f: round(entry["finetuned"][f] / entry["frozen"][f], 4) for f in FIGURES}
        cuts.append(entry)
        print(json.dumps(entry), file=sys.stderr, flush=True)
    print(json.dumps({"bench": "finetune_validation", "finetune": {k: v for k, v in vars(config).items() if k != "threads"},
                      "cuts": cuts, "means": {f: round(float(np.mean([c["ratios"][f] for c in cuts])), 4) for f in FIGURES}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
