"""`python -m orchestration.run` (or `rec-pipeline demo`): materialise assets through Dagster, then summarise.

Runs on the embedded default data, generated into data/raw on first use, or on UCI Online Retail landed from
../shared, or on your own data as the config file says (`--config FILE`, see orchestration/config.py;
`--print-config` writes every setting with its default). Runs go into the on-disk instance in DAGSTER_HOME (default
.dagster_home), so `dagster dev` shows them. `--assets a,b` materialises only those (dvc.yaml's stages use it); by
default the whole `main` job runs.
"""

import argparse
import os
from contextlib import contextmanager
import shutil
import sys
import time
from pathlib import Path

import yaml

from orchestration.config import CONFIG_ENV_VAR, ConfigFileError, merged, read_config
from rec_pipeline.sources.online_retail import shared_copy

ROOT = Path(__file__).resolve().parents[1]


def _default_data(raw_dir: Path, size: str, seed: int) -> None:
    from rec_pipeline.generate import GeneratorConfig, generate

    if (raw_dir / "events").exists() and any((raw_dir / "events").iterdir()):
        print(f"Using the data already in {raw_dir.relative_to(ROOT)} (delete it to regenerate).")
        return
    config = GeneratorConfig.small() if size == "small" else GeneratorConfig()
    config = GeneratorConfig(**{**config.__dict__, "seed": seed})
    started = time.perf_counter()
    summary = generate(raw_dir, config)
    print(
        f"Generated {summary['events']:,} events, {summary['items']:,} items and {summary['users']:,} users "
        f"(seed {seed}) into {raw_dir.relative_to(ROOT)} in {time.perf_counter() - started:.1f} s."
    )


def _land_online_retail(raw_dir: Path, source: Path) -> Path:
    if not source.exists():
        sys.exit(f"Online Retail not found at {source}: see ../shared/data/online_retail/SOURCE.md for where it comes from.")
    landed = raw_dir / "online_retail" / source.name
    if not landed.exists():
        landed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, landed)
    return landed


def _online_retail_config(landed: str) -> dict:
    """The settings that make the pipeline run the evaluation protocol of `rec-pipeline evaluate --data
    online-retail` (its test start, the validation window before it, purchases as the only positives) on the landed
    file. A quarter of its invoice lines carry no customer id (SOURCE.md): a 5% quarantine limit would block by design."""
    import pandas as pd

    from rec_pipeline.datasets import DATASETS

    setup = DATASETS["online-retail"]
    validation_start = pd.Timestamp(setup.test_start) - pd.Timedelta(weeks=setup.validation_weeks)
    return {
        "resources": {
            "source": {"config": {"format": "online_retail", "events_path": landed, "catalog_path": landed}},
            "policy": {"config": {"max_quarantine_share": 0.35}},
        },
        "ops": {"training_splits": {"config": {
            "positive_events": list(setup.positive_events), "validation_start": str(validation_start.date()), "test_start": setup.test_start,
        }}},
    }


def default_config() -> dict:
    """Every setting with its default, in the config file's shape: the resources' fields and each asset's config."""
    from orchestration.definitions import all_assets, default_resources

    resources = {name: {"config": resource.model_dump(exclude={"root"})} for name, resource in default_resources(str(ROOT)).items()}
    ops = {a.key.to_user_string(): {"config": a.op.config_schema.default_value} for a in all_assets if a.op.config_schema.default_provided}
    return {"resources": {k: v for k, v in resources.items() if v["config"]}, "ops": ops}


@contextmanager
def _config_in_environment(config_file: Path | None):
    """The file in REC_PIPELINE_CONFIG while the run executes, so any process it starts loads the same Definitions;
    put back as it was afterwards (a caller in the same process, a test say, must not inherit it)."""
    before = os.environ.get(CONFIG_ENV_VAR)
    if config_file is not None:
        os.environ[CONFIG_ENV_VAR] = str(Path(config_file).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CONFIG_ENV_VAR, None)
        else:
            os.environ[CONFIG_ENV_VAR] = before


def run(data: str, size: str, seed: int, online_retail: Path, assets: list[str] | None = None, config_file: Path | None = None,
        engine: dict | None = None) -> bool:
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    import dagster as dg

    from orchestration.definitions import build_definitions, default_resources

    raw_dir = ROOT / "data" / "raw"
    config = read_config(config_file)
    if data == "online-retail":
        landed = str(_land_online_retail(raw_dir, online_retail).relative_to(ROOT))
        config = merged(_online_retail_config(landed), config)
    if engine:  # --engine and --spark-conf: over the file's `resources: engine:`
        config = merged(config, {"resources": {"engine": {"config": engine}}})
    # Selected in code, not by a selection string: DVC's hydra pins an antlr runtime that Dagster's parser can't use.
    selection = dg.AssetSelection.assets(*assets) if assets else dg.AssetSelection.all()
    try:  # every setting is checked before anything is generated or run
        resources = default_resources(str(ROOT), config, config_file)
        # All of the file's settings, the unselected assets' too: a typo is caught before a later run trips on it.
        dg.validate_run_config(build_definitions(resources, config=config, path=config_file).resolve_job_def("main"), {"ops": config.get("ops", {})})
        job = build_definitions(resources, selection, config, config_file).resolve_job_def("main")
        selected = {node.name for node in job.graph.node_defs}
        run_config = {
            "loggers": {"console": {"config": {"log_level": "INFO"}}},
            "ops": {name: entry for name, entry in config.get("ops", {}).items() if name in selected},
        }
        dg.validate_run_config(job, run_config)
    except dg.DagsterInvalidConfigError as err:
        raise ConfigFileError(config_file or "the --data settings", f"invalid settings: {'; '.join(e.message for e in err.errors)}") from None
    source = config.get("resources", {}).get("source", {}).get("config", {})
    if data == "default" and source.get("format", "canonical") == "canonical" and source.get("events_path", "data/raw/events") == "data/raw/events":
        _default_data(raw_dir, size, seed)

    instance = dg.DagsterInstance.get()
    tags = every_day(instance, job, resources["store"], resources["source"])
    started = time.perf_counter()
    with _config_in_environment(config_file):
        result = job.execute_in_process(run_config=run_config, instance=instance, tags=tags, raise_on_error=False)
    elapsed = time.perf_counter() - started
    _print_summary(result, elapsed)
    return result.success


def every_day(instance, job, store, source) -> dict[str, str]:
    """The run covers every day of raw events: the days are registered as partitions, and the run's tags span them
    (none where the selection holds no partitioned asset)."""
    from assets.ingest import EVENT_DAYS
    from orchestration.sensors import day_range_tags, register_days
    from rec_pipeline.engines.layout import partitions, raw_files

    if job.partitions_def is None or job.partitions_def != EVENT_DAYS:
        return {}
    days = register_days(instance, partitions(raw_files(store.resolve(source.events_path))))
    return day_range_tags(days[0], days[-1])


def _print_summary(result, elapsed: float) -> None:
    print(f"\nRun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {elapsed:.1f} s.")
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        meta = {k: v.value for k, v in materialization.metadata.items()}
        key = materialization.asset_key.to_user_string()
        if "holdout_ndcg@10" in meta:
            print(
                f"  {key:<18} LightGBM lambdarank, {meta['rounds']} rounds on {meta['searches_learnt']:,} searches: validation holdout NDCG@10 "
                f"{meta['holdout_ndcg@10']:.4f} ({meta['holdout_ndcg@10_without_personal']:.4f} without personal features), retrieval "
                f"Recall@100 {meta['validation_retrieval_recall@100']:.4f}; ONNX parity max |diff| {meta['parity_max_abs_diff']:.1e}; "
                f"registered as {meta['model_uri']}"
            )
        elif "trained" in meta:
            print(f"  {key:<18} {meta['status']}")
        elif "hnsw_recall@100_vs_exact" in meta or "build_seconds" in meta:
            recall = next((v for k, v in meta.items() if k.startswith("hnsw_recall")), float("nan"))
            print(f"  {key:<18} {meta['items']:>9,} items: tantivy BM25 + faiss HNSW (recall against exact search {recall:.4f}), built in {meta['build_seconds']:.1f}s")
        elif "searches_with_results" in meta:
            print(f"  {key:<18} {meta['searches']:>9,} searches, {meta['searches_with_results']:,} followed by a click, cart or purchase "
                  f"(train {meta['train_searches_with_results']:,} / validation {meta['validation_searches_with_results']:,} / test {meta['test_searches_with_results']:,})")
        elif "gate_decision" in meta:
            if "search_search_ranker_ndcg@10" in meta:
                print(
                    f"  {key:<18} test search NDCG@10 search ranker {meta['search_search_ranker_ndcg@10']:.4f} vs lexical {meta['search_lexical_ndcg@10']:.4f}, "
                    f"dense {meta['search_dense_ndcg@10']:.4f}, rrf {meta['search_rrf_ndcg@10']:.4f} "
                    f"({meta.get('search_search_ranker_over_best_baseline_ndcg@10', float('nan')):.2f}x the best)"
                )
            ratios = "; ".join(
                f"{name} {meta[f'ratio_{name}']:.2f}x {meta[f'ratio_{name}_baseline']}"
                for name in ("warm_ndcg@20", "cold_recall@20") if f"ratio_{name}" in meta
            )
            print(
                f"  {key:<18} test NDCG@20 ranker {meta['ranker_ndcg@20']:.4f}; over the best baseline of each segment: {ratios}; "
                f"{meta['test_users']:,} test users\n  {'':<18} gate: {meta['gate_reason']}\n  {'':<18} report: {meta['report']}"
            )
            if meta.get("segments_with_too_few_users"):
                for line in str(meta["warnings"]).splitlines():
                    print(f"  {'':<18} {line.strip('- *')}")
        elif "onnx_sha256" in meta:
            registry = f"registered as {meta['model_uri']}" if "model_uri" in meta else "not registered"
            print(
                f"  {key:<18} ONNX opset {meta['opset']}, {meta['onnx_bytes'] / 1e6:.1f} MB, parity max |diff| "
                f"{meta['parity_max_abs_diff']:.1e} over {meta['parity_probes']} shapes; {registry}"
            )
            if "live_parity_max_abs_diff" in meta:
                print(f"  {'':<18} live towers (new items without a retrain): parity max |diff| {meta['live_parity_max_abs_diff']:.1e} over {meta['live_parity_probes']} probes")
        elif "built" in meta:
            print(f"  {key:<18} {meta['status']}")
        elif "mlflow_run_id" in meta:
            print(
                f"  {key:<18} best epoch {meta['best_epoch']} of {meta['epochs_run']}: validation NDCG@20 {meta['val_ndcg@20']:.4f}, "
                f"cold Recall@20 {meta['val_cold_recall@20']:.4f}; {meta['examples_per_s']:,} examples/s on {meta['device']}; "
                f"MLflow run {meta['mlflow_run_id']}"
            )
        elif "items_total" in meta:
            print(
                f"  {key:<18} {meta['items_total']:>9,} items: {meta['encoded_now']:,} encoded ({meta['items_per_s']:,.0f} items/s), "
                f"{meta['reused']:,} reused; {meta['model']} sha256 {meta['weights_sha256'][:12]}…, {meta['backend']} on {meta['device']}"
            )
        elif "train_interactions" in meta:
            print(
                f"  {key:<18} {meta['positive_events']}: train {meta['train_interactions']:,} / validation {meta['validation_interactions']:,} / "
                f"test {meta['test_interactions']:,} interactions from {meta['validation_start'][:10]} and {meta['test_start'][:10]}; "
                f"{meta['test_users']:,} test users, {meta['cold_items']:,} cold items, {meta['new_users']:,} new users"
            )
        elif "rows_in" in meta:
            print(
                f"  {key:<18} {meta['rows_in']:>9,} rows in = {meta['rows_valid']:,} valid + "
                f"{meta['rows_quarantined']:,} quarantined {meta['quarantined_by_rule'] or ''}"
            )
        else:
            print(f"  {key:<18} {meta.get('rows', 0):>9,} rows, DVC md5 {meta.get('dvc_md5', '?')}")
    for evaluation in result.get_asset_check_evaluations():
        verdict = "passed" if evaluation.passed else "FAILED"
        print(f"  check {evaluation.asset_key.to_user_string()}:{evaluation.check_name} {verdict}: {evaluation.description}")
    home = os.environ["DAGSTER_HOME"]
    print(
        "\nWhere to look next:\n"
        f"  make ui                      # dagster dev on http://127.0.0.1:3000 with DAGSTER_HOME={home}:\n"
        "                               # asset graph, run logs, metadata and check results of this run\n"
        "  make mlflow                  # MLflow UI on http://127.0.0.1:5000: the ranker's runs, params, per-epoch metrics, model files\n"
        "  data/validated/              # valid tables and quarantine tables (Parquet)\n"
        "  data/models/ranker/          # the trained ranker: model.safetensors, config.json, items.json, features.json\n"
        "  data/models/ranker_onnx/     # the serving export: ranker.onnx, the live towers, items.json, serving.json (parity probes)\n"
        "  data/reports/eval_report/report.html   # the evaluation report: open it in a browser\n"
        "  .venv/bin/rec-pipeline recommend --user <customer id>   # top 10 from the registered ONNX model\n"
        "  .venv/bin/rec-pipeline search --query 'linen tea towel' [--user <customer id>]   # personalised product search\n"
        "  REC_PIPELINE_TOKEN=<token> make serve   # the real-time service on http://127.0.0.1:8000 (OpenAPI at /docs)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rec-pipeline demo", description=__doc__.splitlines()[0])
    parser.add_argument("--assets", help="comma-separated asset names to materialise (default: the whole main job)")
    parser.add_argument("--data", choices=["default", "online-retail"], default="default")
    parser.add_argument("--size", choices=["default", "small"], default="default", help="size of the generated data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--online-retail-path", type=Path, default=shared_copy(ROOT))
    parser.add_argument("--config", type=Path, help="the project's config file (YAML: resources and ops settings; see --print-config)")
    parser.add_argument("--print-config", action="store_true", help="print every setting with its default, as a config file to start from")
    parser.add_argument("--engine", choices=["local", "spark"], help="where the data stages run (default: the config file's, else local)")
    parser.add_argument("--spark-conf", action="append", metavar="KEY=VALUE", help="a Spark setting for --engine spark (spark.master=spark://HOST:7077)")
    args = parser.parse_args(argv)
    if args.print_config:
        print(yaml.safe_dump(default_config(), sort_keys=False), end="")
        return 0
    assets = args.assets.split(",") if args.assets else None
    if any("=" not in p for p in args.spark_conf or []):
        print("error: --spark-conf takes KEY=VALUE (spark.master=spark://HOST:7077)", file=sys.stderr)
        return 2
    engine = {**({"name": args.engine} if args.engine else {}), **({"spark_conf": dict(p.split("=", 1) for p in args.spark_conf)} if args.spark_conf else {})}
    try:
        return 0 if run(args.data, args.size, args.seed, args.online_retail_path, assets, args.config, engine) else 1
    except ConfigFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
