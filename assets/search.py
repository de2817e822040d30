"""`search_sessions`, `search_index` and `search_ranker`: product search learnt from the shop's own search logs."""

import json
import time
from dataclasses import asdict

import dagster as dg
import numpy as np
import pandas as pd

from assets.config import from_dataclasses
from assets.embeddings import item_embeddings
from assets.metadata import consumed
from assets.ranker import ranker
from assets.engine import DataEngine
from assets.resources import ComputeDevice, MlflowTracking, ProjectStore
from assets.splits import training_splits
from assets.validation import validated_catalog, validated_events
from rec_pipeline.embeddings import ENCODER_SETTINGS_FILE, item_texts, read_encoder_settings, read_vectors
from rec_pipeline.search import protocol
from rec_pipeline.search.features import RetrievalConfig
from rec_pipeline.search.index import SearchIndexConfig, build_search_index, exact_search, open_search_index
from rec_pipeline.search.ranker import ONNX_FILE, OPSET, PARITY_TOLERANCE, SearchRankerConfig, parity, save_search_ranker
from rec_pipeline.settings import from_settings
from rec_pipeline.storage import file_sha256
from rec_pipeline.storage import read_table
from rec_pipeline.versioning import git_commit

SEARCH_MODEL = "rec_pipeline_search"
SearchIndexSettings = from_dataclasses("SearchIndexSettings", SearchIndexConfig)
SearchRankerSettings = from_dataclasses("SearchRankerSettings", SearchRankerConfig, RetrievalConfig, exclude=("personal", "threads", "holdout_fraction"))


@dg.asset(group_name="search", deps=[validated_events, training_splits], kinds={"pandas", "spark", "parquet"})
def search_sessions(context: dg.AssetExecutionContext, store: ProjectStore, engine: DataEngine) -> dg.MaterializeResult:
    """Each search with what its session clicked, carted or bought after it (purchase > cart > click), cut by the
    recommender's temporal split."""
    summary = json.loads(store.data_path("splits", "summary.json").read_text())
    path = store.data_path(*protocol.SESSIONS_FILE)
    counts = engine.engine().search_sessions(store.validated_path("events"), pd.Timestamp(summary["validation_start"]), pd.Timestamp(summary["test_start"]), path)
    context.log.info(f"{counts['searches']:,} searches, {counts['searches_with_results']:,} with a click, cart or purchase after them")
    return dg.MaterializeResult(metadata={**counts, "engine": engine.describe(), "path": dg.MetadataValue.path(str(path))})


@dg.asset(group_name="search", deps=[validated_catalog, item_embeddings], kinds={"tantivy", "faiss"})
def search_index(context: dg.AssetExecutionContext, config: SearchIndexSettings, store: ProjectStore) -> dg.MaterializeResult:
    """BM25 over the item text (tantivy) and the item vectors in an HNSW graph (faiss), one row per catalog item."""
    catalog = read_table(store.validated_path("catalog")).drop_duplicates("item_id", keep="last")
    _, text_config = read_encoder_settings(store.data_path("embeddings", ENCODER_SETTINGS_FILE))
    keys, matrix = read_vectors(store.data_path("embeddings", "item_embeddings.parquet"))
    item_ids = sorted(catalog["item_id"].astype(str))
    vectors = pd.DataFrame(matrix, index=keys["item_id"]).reindex(item_ids).to_numpy(np.float32)
    texts = item_texts(catalog.set_index("item_id").reindex(item_ids).reset_index(), text_config).tolist()
    started = time.perf_counter()
    folder = build_search_index(store.data_path(*protocol.INDEX_DIR), item_ids, texts, vectors, from_settings(SearchIndexConfig, config))
    seconds = time.perf_counter() - started
    # The graph against exact search, on item vectors as queries: what HNSW gives up for speed, measured per build.
    index = open_search_index(folder)
    probes = np.random.default_rng(0).choice(len(item_ids), size=min(200, len(item_ids)), replace=False)
    k = min(100, len(item_ids))
    recall = float(np.mean([len(set(index.dense.search(vectors[p], k)[0].tolist()) & set(exact_search(vectors, vectors[p], k).tolist())) / k for p in probes]))
    context.log.info(f"search index over {len(item_ids):,} items in {seconds:.1f}s; HNSW recall@{k} against exact search {recall:.4f}")
    return dg.MaterializeResult(metadata={
        "items": len(item_ids), "build_seconds": round(seconds, 2), f"hnsw_recall@{k}_vs_exact": round(recall, 4),
        "path": dg.MetadataValue.path(str(folder)),
    })


@dg.asset(group_name="search", deps=[search_index, search_sessions, ranker, training_splits], kinds={"lightgbm", "onnx", "mlflow"})
def search_ranker(
    context: dg.AssetExecutionContext, config: SearchRankerSettings, store: ProjectStore, compute: ComputeDevice, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    """LightGBM lambdarank over the retrieved candidates (lexical ∪ dense ∪ the query category's popular items) with
    lexical, dense, popularity, recency, price and personal features; ONNX behind a parity gate, registered in
    MLflow. A second model without the personal features is the ablation the report compares against."""
    project = protocol.Project.load(store.data_path())
    if project.sessions[project.sessions["split"] == "validation"]["items"].map(len).sum() == 0:
        context.log.warning("no search in the validation window has a click, cart or purchase after it: no search ranker (the data has no search logs)")
        return dg.MaterializeResult(metadata={"status": "not trained: no search sessions in the validation window", "trained": False})
    ranker_config = from_settings(SearchRankerConfig, config, threads=compute.threads or 1)
    retrieval = from_settings(RetrievalConfig, config)
    fitted = protocol.fit_search_rankers(project, ranker_config, retrieval, compute.threads)
    probes = fitted["examples"].features[:2000]
    folders, parities = {}, {}
    for name, parts in (("search_ranker", protocol.RANKER_DIR), ("search_ranker_without_personal", protocol.ABLATION_DIR)):
        booster, info, fitted_config = fitted[name]
        saved = save_search_ranker(booster, fitted_config, store.data_path(*parts), probes, {**info, "retrieval": asdict(retrieval)})
        worst, _ = parity(saved)
        if worst > PARITY_TOLERANCE:
            raise ValueError(f"{saved / ONNX_FILE}: ONNX Runtime differs from LightGBM by {worst:.2e} (> {PARITY_TOLERANCE:.0e})")
        folders[name], parities[name] = saved, worst
    metrics = {
        "validation_retrieval_recall@100": fitted["validation_recall@100"],
        "holdout_ndcg@10": round(fitted["search_ranker"][1]["holdout_ndcg@10"], 4),
        "holdout_ndcg@10_without_personal": round(fitted["search_ranker_without_personal"][1]["holdout_ndcg@10"], 4),
        "rounds": fitted["search_ranker"][1]["rounds"],
        "searches_learnt": fitted["searches_learnt"],
        "validation_searches": fitted["validation_searches"],
        "parity_max_abs_diff": max(parities.values()),
    }
    registered = _register(context, mlflow_tracking, store, folders["search_ranker"], metrics, ranker_config, retrieval)
    context.log.info(f"search ranker: validation holdout NDCG@10 {metrics['holdout_ndcg@10']} ({metrics['holdout_ndcg@10_without_personal']} "
                     f"without personal features), retrieval recall@100 {metrics['validation_retrieval_recall@100']}")
    return dg.MaterializeResult(metadata={
        **metrics, "trained": True, "onnx_sha256": file_sha256(folders["search_ranker"] / ONNX_FILE), "opset": OPSET, **registered,
        "path": dg.MetadataValue.path(str(folders["search_ranker"])),
    })


def _register(context, mlflow_tracking: MlflowTracking, store: ProjectStore, folder, metrics: dict, config: SearchRankerConfig,
              retrieval: RetrievalConfig) -> dict:
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from rec_pipeline.search.ranker import MODEL_FILE, SETTINGS_FILE

    mlflow = mlflow_tracking.start(store)
    width = len(config.features)
    signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype("float32"), (-1, width), "features")]),
                               outputs=Schema([TensorSpec(np.dtype("float32"), (-1, 1), "variable")]))
    inputs = {asset.key.to_user_string(): consumed(context, asset) for asset in (search_index, search_sessions, ranker)}
    tags = {
        "dagster_run_id": context.run.run_id, "dagster_asset": "search_ranker", "git_commit": git_commit(store.root_path()),
        **{f"data_version.{k}": c.data_version for k, c in inputs.items()},
    }
    with mlflow.start_run(run_name=f"search-ranker-{context.run.run_id[:8]}", tags=tags) as run:
        mlflow.log_params({**{f"ranker.{k}": v for k, v in asdict(config).items()}, **{f"retrieval.{k}": v for k, v in asdict(retrieval).items()},
                           "features": ",".join(config.features)})
        mlflow.log_metrics({k.replace("@", "_at_"): float(v) for k, v in metrics.items()})
        info = mlflow.onnx.log_model(
            onnx.load(str(folder / ONNX_FILE)), name="search_ranker", signature=signature, registered_model_name=SEARCH_MODEL,
            onnx_execution_providers=["CPUExecutionProvider"], save_as_external_data=False,
            pip_requirements=mlflow_tracking.onnx_requirements(), extra_files=[str(folder / MODEL_FILE), str(folder / SETTINGS_FILE)],
        )
        run_id = run.info.run_id
    version = int(info.registered_model_version)
    return {"registered_model": SEARCH_MODEL, "registered_version": version, "model_uri": f"models:/{SEARCH_MODEL}/{version}", "mlflow_run_id": run_id}
