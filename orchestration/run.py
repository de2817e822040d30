"""`python -m orchestration.run` (or `rec-pipeline demo`): materialise assets through Dagster, then summarise.

Runs on the embedded default data, generated into data/raw on first use, or on UCI Online Retail landed from
../shared. Runs go into the on-disk instance in DAGSTER_HOME (default .dagster_home), so `dagster dev` shows them.
`--assets a,b` materialises only those (dvc.yaml's stages use it); by default the whole `main` job runs.
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ONLINE_RETAIL_SHARED = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"


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


def _online_retail_protocol() -> dict:
    """Op config that makes the pipeline run the evaluation protocol of `rec-pipeline evaluate --data online-retail`:
    its test cut, its validation window before it, purchases as the only positives."""
    import pandas as pd

    from rec_pipeline.protocol import DATASETS

    setup = DATASETS["online-retail"]
    train_cut = pd.Timestamp(setup.cut) - pd.Timedelta(weeks=setup.validation_weeks)
    return {
        "training_splits": {"config": {"train_cut": str(train_cut.date()), "validation_cut": setup.cut}},
        "ranker": {"config": {"positive_events": list(setup.positive_events)}},
    }


def run(data: str, size: str, seed: int, online_retail: Path, assets: list[str] | None = None) -> bool:
    os.environ.setdefault("DAGSTER_HOME", str(ROOT / ".dagster_home"))
    import dagster as dg

    from orchestration.definitions import build_definitions, default_resources
    from assets.resources import RawDataSource, ValidationPolicy

    resources = default_resources(str(ROOT))
    raw_dir = ROOT / "data" / "raw"
    ops = {}
    if data == "online-retail":
        ops = _online_retail_protocol()
        landed = str(_land_online_retail(raw_dir, online_retail).relative_to(ROOT))
        resources["source"] = RawDataSource(format="online_retail", events_path=landed, catalog_path=landed)
        # A quarter of its invoice lines carry no customer id (SOURCE.md): 5% would block by design.
        resources["policy"] = ValidationPolicy(max_quarantine_share=0.35)
    else:
        _default_data(raw_dir, size, seed)

    started = time.perf_counter()
    # Selected in code, not by a selection string: DVC's hydra pins an antlr runtime that Dagster's parser can't use.
    selection = dg.AssetSelection.assets(*assets) if assets else dg.AssetSelection.all()
    job = build_definitions(resources, selection).resolve_job_def("main")
    selected = {node.name for node in job.graph.node_defs}
    quiet = {"loggers": {"console": {"config": {"log_level": "INFO"}}}, "ops": {k: v for k, v in ops.items() if k in selected}}
    result = job.execute_in_process(run_config=quiet, instance=dg.DagsterInstance.get(), raise_on_error=False)
    elapsed = time.perf_counter() - started
    _print_summary(result, elapsed)
    return result.success


def _print_summary(result, elapsed: float) -> None:
    print(f"\nRun {result.run_id} {'succeeded' if result.success else 'FAILED'} in {elapsed:.1f} s.")
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        meta = {k: v.value for k, v in materialization.metadata.items()}
        key = materialization.asset_key.to_user_string()
        if "gate_decision" in meta:
            print(
                f"  {key:<18} test NDCG@20 ranker {meta['ranker_ndcg@20']:.4f} vs ALS {meta['als_ndcg@20']:.4f}; cold Recall@20 "
                f"ranker {meta.get('ranker_cold_recall@20', float('nan')):.4f} vs content-kNN {meta.get('content_knn_cold_recall@20', float('nan')):.4f}; "
                f"{meta['test_users']:,} test users\n  {'':<18} gate: {meta['gate_reason']}\n  {'':<18} report: {meta['report']}"
            )
        elif "onnx_sha256" in meta:
            registry = f"registered as {meta['model_uri']}" if "model_uri" in meta else "not registered"
            print(
                f"  {key:<18} ONNX opset {meta['opset']}, {meta['onnx_bytes'] / 1e6:.1f} MB, parity max |diff| "
                f"{meta['parity_max_abs_diff']:.1e} over {meta['parity_probes']} shapes; {registry}"
            )
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
                f"  {key:<18} train {meta['train_interactions']:,} / validation {meta['validation_interactions']:,} / "
                f"test {meta['test_interactions']:,} interactions; {meta['cold_items']:,} cold items, {meta['new_users']:,} new users"
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
        "  data/models/ranker/          # the trained ranker: model.safetensors, config.json, items.json\n"
        "  data/models/ranker_onnx/     # the serving export: ranker.onnx, items.json, serving.json (parity probes)\n"
        "  data/reports/eval_report/report.html   # the evaluation report: open it in a browser\n"
        "  .venv/bin/rec-pipeline recommend --user <customer id>   # top 10 from the registered ONNX model"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rec-pipeline demo", description=__doc__.splitlines()[0])
    parser.add_argument("--assets", help="comma-separated asset names to materialise (default: the whole main job)")
    parser.add_argument("--data", choices=["default", "online-retail"], default="default")
    parser.add_argument("--size", choices=["default", "small"], default="default", help="size of the generated data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--online-retail-path", type=Path, default=ONLINE_RETAIL_SHARED)
    args = parser.parse_args(argv)
    assets = args.assets.split(",") if args.assets else None
    return 0 if run(args.data, args.size, args.seed, args.online_retail_path, assets) else 1


if __name__ == "__main__":
    sys.exit(main())
