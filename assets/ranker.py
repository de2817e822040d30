"""`ranker`: the hybrid ranker early-stopped on the validation split, then refit on train + validation; tracked in MLflow."""

import json
from dataclasses import asdict
import dagster as dg
import numpy as np
import pandas as pd

from assets.embeddings import item_embeddings
from assets.config import from_dataclasses
from assets.gpu import GPU_POOL, gpu_op_tags
from assets.metadata import consumed, markdown_table, mlflow_metric_name
from assets.resources import ComputeDevice, MlflowTracking, ProjectStore
from assets.splits import training_splits
from assets.validation import validated_catalog
from rec_pipeline.embeddings import read_vectors
from rec_pipeline.evaluation import temporal_split
from rec_pipeline.protocol import segment_metrics
from rec_pipeline.ranker.model import RankerConfig, save_ranker
from rec_pipeline.ranker.train import TrainConfig, score
from rec_pipeline.ranker.train import ranker_validation, train_ranker
from rec_pipeline.settings import from_settings
from rec_pipeline.storage import read_table
from rec_pipeline.versioning import git_commit


class RankerTrainingConfig(from_dataclasses(
    "RankerSettings", RankerConfig, TrainConfig,
    # From the data (item count, text and side-feature sizes) and from the `compute` resource (device, threads).
    exclude=("n_items", "text_dim", "n_categories", "n_price_bands", "threads", "device"),
)):
    # The evaluation protocol: once validation has picked the epoch count, refit on train + validation over every
    # catalog item, so the model that ships has seen the latest data. False keeps the model trained on train alone.
    refit: bool = True


@dg.asset(
    group_name="training",
    deps=[training_splits, item_embeddings, validated_catalog],
    pool=GPU_POOL,
    op_tags=gpu_op_tags(),
    kinds={"pytorch", "mlflow", "safetensors"},
)
def ranker(
    context: dg.AssetExecutionContext,
    config: RankerTrainingConfig,
    store: ProjectStore,
    compute: ComputeDevice,
    mlflow_tracking: MlflowTracking,
) -> dg.MaterializeResult:
    """Scores every (user, item): warm items from IDs and text, cold items from text; one MLflow run per materialisation.

    Validation picks the epoch count (the tuning fit on train); the kept model is then refit with that many epochs on
    everything before the test start, over the whole catalog, as the evaluation protocol fits its final models.
    """
    interactions = pd.read_parquet(store.data_path("splits", "interactions.parquet"))
    catalog = read_table(store.validated_path("catalog"))
    keys, matrix = read_vectors(store.data_path("embeddings", "item_embeddings.parquet"))
    vectors = pd.DataFrame(matrix, index=keys["item_id"])
    summary = json.loads(store.data_path("splits", "summary.json").read_text())
    validation_start, test_start = pd.Timestamp(summary["validation_start"]), pd.Timestamp(summary["test_start"])

    # The interactions are the positive events (training_splits' config); test stays unseen.
    positives = interactions.loc[interactions["split"] != "test", ["user_id", "item_id", "ts"]]
    split = temporal_split(positives, validation_start, end=test_start, catalog=catalog)
    train = positives[positives["ts"] < validation_start]
    # Item count, text size and side-feature sizes come from the data (train_ranker fills them in).
    model_config = from_settings(RankerConfig, config, n_items=0)
    device = compute.torch_device()
    train_config = from_settings(TrainConfig, config, threads=compute.threads, device=device)
    validation = ranker_validation(split, train, test_start, model_config.history)

    mlflow = mlflow_tracking.start(store)
    inputs = {asset.key.to_user_string(): consumed(context, asset) for asset in (training_splits, item_embeddings, validated_catalog)}
    data_versions = {name: c.data_version for name, c in inputs.items()}
    commit = git_commit(store.root_path())
    tags = {
        "dagster_run_id": context.run.run_id, "dagster_asset": "ranker", "git_commit": commit,
        **{f"data_version.{k}": v for k, v in data_versions.items()},
        **{f"dagster_input_event.{k}": str(c.storage_id) for k, c in inputs.items()},
    }
    with mlflow.start_run(run_name=f"ranker-{context.run.run_id[:8]}", tags=tags) as run:
        mlflow.log_params({"positive_events": ",".join(summary["positive_events"]), "validation_start": validation_start.isoformat(), "test_start": test_start.isoformat()})
        result = train_ranker(train, split.item_ids, vectors, catalog, model_config, train_config, validation)
        for record in result.epochs:
            mlflow.log_metrics({"epoch_" + mlflow_metric_name(k): float(v) for k, v in record.items() if k != "epoch"}, step=record["epoch"])
        final = segment_metrics(score(result.model.cpu(), validation.histories, validation.season), split)
        final = {f"val_{k}": round(float(v), 4) for k, v in final.items()}
        shipped, item_ids = result, split.item_ids
        # The train-only fit is kept too: search_ranker learns on the validation window with this model's scores,
        # which have not seen that window, as the shipped model's scores have not seen the test window.
        save_ranker(result.model.cpu(), store.data_path("models", "ranker_tuning"), list(split.item_ids), result.features)
        if config.refit:
            item_ids = np.array(sorted(catalog["item_id"].unique()), dtype=object)
            before_test = positives[positives["ts"] < test_start]
            shipped = train_ranker(before_test, item_ids, vectors, catalog, model_config, train_config, epochs=result.best_epoch)
        mlflow.log_params({
            **{f"model.{k}": v for k, v in asdict(shipped.model.config).items()},
            **{f"train.{k}": v for k, v in asdict(train_config).items()},
            "refit": config.refit,
        })
        mlflow.log_metrics({
            **{mlflow_metric_name(k): v for k, v in final.items()}, "best_epoch": result.best_epoch, "examples_per_s": result.examples_per_s,
            "shipped_training_examples": shipped.examples,
        })
        folder = save_ranker(shipped.model.cpu(), store.data_path("models", "ranker"), list(item_ids), shipped.features)
        mlflow.log_artifacts(str(folder), artifact_path="ranker")
        run_id = run.info.run_id
        experiment_id = run.info.experiment_id

    context.log.info(
        f"ranker: best epoch {result.best_epoch} of {len(result.epochs)}, validation NDCG@20 {final['val_ndcg@20']:.4f}, "
        f"cold recall@20 {final['val_cold_recall@20']:.4f}; {result.examples_per_s:,.0f} examples/s on {device}"
        + (f"; refit on train + validation ({shipped.examples:,} examples, {len(item_ids):,} items)" if config.refit else "")
    )
    return dg.MaterializeResult(
        metadata={
            **final,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.epochs),
            "training_examples": result.examples,
            "positive_events": ", ".join(summary["positive_events"]),
            "git_commit": commit,
            "refit": config.refit,
            "shipped_trained_on": "train + validation" if config.refit else "train",
            "shipped_training_examples": shipped.examples,
            "examples_per_s": round(result.examples_per_s),
            "device": compute.describe(),
            "items": len(item_ids),
            "warm_items": int(shipped.model.warm.sum().item()),
            "validation_users": len(split.test_rows),
            "mlflow_run_id": run_id,
            "mlflow_run": dg.MetadataValue.url(f"http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}"),
            "mlflow_tracking_uri": mlflow_tracking.resolved_uri(store),
            "input_data_versions": dg.MetadataValue.json(data_versions),
            "epochs": dg.MetadataValue.md(_epochs_table(result.epochs)),
            "path": dg.MetadataValue.path(str(folder)),
        }
    )


def _epochs_table(epochs: list[dict]) -> str:
    rows = [{k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in e.items()} for e in epochs]
    return markdown_table(rows, ["epoch", "loss", "val_ndcg@20", "seconds"])
