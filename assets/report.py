"""`eval_report`: the model that ships, scored through ONNX Runtime, against every baseline on the test split, by
segment, with confidence intervals; the report as HTML and Markdown; the champion/challenger gate in the registry."""

import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.embeddings import item_embeddings
from assets.export import ranker_onnx
from assets.search import search_ranker
from assets.config import from_dataclasses
from assets.metadata import consumed, mlflow_metric_name
from assets.resources import ComputeDevice, MlflowTracking, ProjectStore
from assets.splits import training_splits
from assets.validation import validated_catalog
from rec_pipeline import report as rp
from rec_pipeline.embeddings import read_vectors
from rec_pipeline.evaluation import temporal_split
from rec_pipeline.ranker.export import ONNX_FILE, OnnxRanker
from rec_pipeline.ranker.model import window_season
from rec_pipeline.registry import CHAMPION, champion_version, client_for, load_version
from rec_pipeline.report_html import markdown_summary, plots, render_html, score_sample, search_markdown, write_report
from rec_pipeline.search.protocol import evaluate_search
from rec_pipeline.settings import from_settings
from rec_pipeline.storage import file_sha256
from rec_pipeline.storage import read_table
from rec_pipeline.versioning import git_commit

# Models whose scores are on a scale worth plotting (random and popularity are uniform or counts).
DISTRIBUTION_MODELS = ("ranker", "champion", "ease", "als", "content_knn")


EvalReportConfig = from_dataclasses("EvalReportConfig", rp.ReportConfig)


@dg.asset(
    group_name="evaluation",
    deps=[ranker_onnx, search_ranker, training_splits, item_embeddings, validated_catalog],
    kinds={"onnx", "mlflow", "html"},
)
def eval_report(
    context: dg.AssetExecutionContext, config: EvalReportConfig, store: ProjectStore, compute: ComputeDevice, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    """Recall/NDCG/HitRate@10/20/50, MRR and coverage for the segments all, warm items, cold-start items and new users,
    the ranker against random, popularity, recent popularity, ALS and content-kNN; the champion is re-scored on the
    same split and the alias moves only if the challenger beats it by more than the confidence interval."""
    inputs = {asset.key.to_user_string(): consumed(context, asset) for asset in (ranker_onnx, training_splits, item_embeddings, validated_catalog)}
    export_meta = inputs["ranker_onnx"].metadata
    bundle = store.data_path("models", "ranker_onnx")
    if export_meta.get("onnx_sha256") != file_sha256(bundle / ONNX_FILE):
        raise ValueError(f"{bundle / ONNX_FILE} is not the export this run's ranker_onnx recorded: materialise ranker_onnx again")

    # The interactions are the positive events, as training_splits defined them for the ranker too.
    interactions = pd.read_parquet(store.data_path("splits", "interactions.parquet"), columns=["user_id", "item_id", "ts"])
    catalog = read_table(store.validated_path("catalog"))
    users = pd.read_parquet(store.data_path("splits", "users.parquet"))
    keys, matrix = read_vectors(store.data_path("embeddings", "item_embeddings.parquet"))
    vectors = pd.DataFrame(matrix, index=keys["item_id"])
    summary = json.loads(store.data_path("splits", "summary.json").read_text())
    validation_start, test_start = pd.Timestamp(summary["validation_start"]), pd.Timestamp(summary["test_start"])

    # The protocol: train is everything before the test start; the validation window before it tunes ALS.
    split = temporal_split(interactions, test_start, catalog=catalog)
    validation = temporal_split(interactions, validation_start, end=test_start, catalog=catalog)
    before_test = interactions[interactions["ts"] < test_start]
    season = window_season(test_start, interactions["ts"].max() + pd.Timedelta(seconds=1))
    report_config = from_settings(rp.ReportConfig, config)

    scores = {"ranker": rp.onnx_scores(OnnxRanker.from_bundle(bundle, compute.threads), split, before_test, season)}
    name, version = export_meta.get("registered_model"), export_meta.get("registered_version")
    champion = None
    if version is not None:
        version, uri = str(version), mlflow_tracking.resolved_uri(store)
        client = client_for(uri)
        champion = champion_version(client, name)
        if champion is not None and champion != version:
            scores["champion"] = rp.onnx_scores(load_version(uri, name, champion, compute.threads), split, before_test, season)
    baselines, chosen = rp.baseline_scores(
        split, validation, before_test, vectors.loc[split.item_ids].to_numpy(np.float32), validation_start, config.seed, compute.threads
    )
    scores.update(baselines)
    views = rp.segment_views(split, users.loc[users["new"], "user_id"])
    report = rp.build_report(scores, views, report_config)
    ratios = rp.headline_ratios(report)
    for warning in report.warnings:
        context.log.warning(warning)

    decision = None
    if version is not None:
        decision = rp.gate(report, config.primary_metric, config.primary_segment, version, champion)
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "gate_decision", "promoted" if decision.promote else "not promoted")
        client.set_model_version_tag(name, version, "gate_reason", decision.reason)
    context.log.info(decision.reason if decision else "ranker_onnx did not register the model: no champion/challenger gate")

    versions = {
        "git commit": git_commit(store.root_path()),
        "registered model": f"models:/{name}/{version}" if version else "not registered",
        "champion before this report": f"version {champion}" if champion else "none",
        "ONNX sha256": export_meta["onnx_sha256"],
        "ranker weights sha256": export_meta.get("ranker_weights_sha256", "unknown"),
        "ranker MLflow run": export_meta.get("ranker_mlflow_run_id", "unknown"),
        **{f"data version: {k}": c.data_version for k, c in inputs.items() if k != "ranker_onnx"},
        "positives": ", ".join(summary["positive_events"]),
        "test window": f"{test_start.date()} to {interactions['ts'].max().date()} (train before it; ALS tuned on {validation_start.date()} to {test_start.date()})",
        "ALS chosen on validation": ", ".join(f"{k} {v}" for k, v in chosen["als"].items()),
        "EASE chosen on validation": f"L2 weight {chosen['ease_lambda']:g}",
        "items / cold-start items": f"{len(split.item_ids):,} / {int(split.cold_items.sum()):,}",
    }
    samples = {m: score_sample(scores[m], views["all"], seed=config.seed) for m in DISTRIBUTION_MODELS if m in scores}
    images = plots(report, samples)
    folder = store.data_path("reports", "eval_report")
    html_path = folder / "report.html"
    # Search: the test window's searches, the search ranker and its ablation against lexical, dense and their fusion.
    search = (evaluate_search(store.data_path(), threads=compute.threads) if consumed(context, search_ranker).metadata.get("trained")
              else {"searches": {"all": 0}, "models": {}, "note": "no search ranker was trained (no search sessions)"})
    markdown = markdown_summary(report, decision, str(html_path), ratios) + "\n\n" + search_markdown(search)
    figures = {**report.to_json(), "headline_ratios": ratios, "gate": decision.as_dict() if decision else None, "versions": versions, "search": search}
    html_text = render_html(report, decision, versions, images, "rec_pipeline evaluation report", search, ratios)
    write_report(folder, html_text, markdown, images, figures)

    headline = _headline(report)
    ranker_run = export_meta.get("ranker_mlflow_run_id")
    if ranker_run and ranker_run != "none":
        mlflow = mlflow_tracking.start(store)
        with mlflow.start_run(run_id=ranker_run):
            mlflow.log_metrics({f"test_{mlflow_metric_name(k)}": v for k, v in headline.items()})
            mlflow.log_artifacts(str(folder), artifact_path="eval_report")
            if decision:
                mlflow.set_tags({"gate.decision": "promoted" if decision.promote else "not promoted", "gate.reason": decision.reason})
    return dg.MaterializeResult(
        metadata={
            "summary": dg.MetadataValue.md(markdown),
            **headline,
            **{f"ratio_{name}": round(r["ratio"], 4) for name, r in ratios.items()},
            **{f"ratio_{name}_baseline": r["baseline"] for name, r in ratios.items()},
            "test_users": report.segments["all"],
            "warnings": dg.MetadataValue.md("\n".join(f"- **{w}**" for w in report.warnings) or "none: every segment has at least "
                                            f"{report.min_segment_users:,} test users"),
            "segments_with_too_few_users": len(report.small_segments),
            **{f"{segment}_users": n for segment, n in report.segments.items() if segment != "all"},
            "gate_decision": ("promoted" if decision.promote else "not promoted") if decision else "no gate: model not registered",
            "gate_reason": decision.reason if decision else "ranker_onnx did not register the model",
            "champion": f"version {version}" if decision and decision.promote else (f"version {champion}" if champion else "none"),
            "versions": dg.MetadataValue.json(versions),
            **{f"search_{k}": v for k, v in search.get("ratios", {}).items() if isinstance(v, float)},
            **({f"search_{model}_ndcg@10": by_segment["all"]["ndcg@10"] for model, by_segment in search["models"].items()}),
            "report": dg.MetadataValue.path(str(html_path)),
        }
    )


def _headline(report: rp.Report) -> dict[str, float]:
    """Numeric metadata, so Dagster plots them across materialisations: NDCG/Recall@20 on all and cold items."""
    out = {}
    for model in report.figures:
        for segment, metric in (("all", "ndcg@20"), ("all", "recall@20"), ("cold_items", "recall@20"), ("cold_items", "ndcg@20")):
            if segment in report.figures[model]:
                prefix = "" if segment == "all" else "cold_"
                out[f"{model}_{prefix}{metric}"] = round(report.value(model, segment, metric), 5)
    return out
