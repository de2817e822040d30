"""What tests/test_engines.py runs inside a network namespace of its own: a Spark standalone cluster (a master and two
workers), and on it

1. the data stages on the default data through both engines (validation, splits, search sessions, item vectors),
2. every bad-input class through both engines' validation,
3. the `main` job materialised through Dagster with the spark engine against the cluster,
4. `rec-pipeline validate --engine spark` against the cluster, and a case validated through Spark Connect (a Connect server on the cluster, reached with `spark.remote`),

then every process it started stopped, and what is left listed. Writes `report.json` and the tables under --out;
the test compares them.

    python -m tests.spark_cluster --out DIR --default-raw DIR --cases DIR --models DIR --project DIR
"""

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

NOW = pd.Timestamp("2026-01-01", tz="UTC")  # the validation clock of the bad-input tests
SALT = "differential-test-salt"


def stages(engine, raw: Path, data: Path, models: Path, salt: str, now: pd.Timestamp) -> dict:
    """The data stages on `raw` as the assets run them, into `data`."""
    from rec_pipeline.embeddings import ItemTextConfig
    from rec_pipeline.encoders import EncoderConfig, TextEncoder
    from rec_pipeline.engines.layout import TableFolders, partitions, raw_files
    from rec_pipeline.engines.steps import ValidationJob
    from rec_pipeline.splits import SplitConfig
    from rec_pipeline.validation import ValidationSettings

    settings = ValidationSettings(now=now)
    validated = data / "validated"
    engine.validate(ValidationJob("catalog", "canonical", tuple(raw_files(raw / "catalog", partitioned=False)), settings, TableFolders.under(validated, "catalog", False)))
    files = raw_files(raw / "events")
    engine.validate(ValidationJob("events", "canonical", tuple(files), settings, TableFolders.under(validated, "events", True), salt=salt,
                                  keep=tuple(partitions(files)), catalog=str(validated / "catalog.parquet")))
    summary = engine.training_splits(validated / "events.parquet", validated / "catalog.parquet", SplitConfig(), data / "splits")
    sessions = engine.search_sessions(validated / "events.parquet", pd.Timestamp(summary["validation_start"]), pd.Timestamp(summary["test_start"]),
                                      data / "splits" / "search_sessions.parquet")
    encoder = TextEncoder(EncoderConfig(), onnx_dir=models)
    vectors = engine.embed(validated / "catalog.parquet", encoder, ItemTextConfig(), data / "embeddings" / "cache" / f"{encoder.fingerprint}.parquet",
                           data / "embeddings" / "item_embeddings.parquet")
    return {"splits": summary, "sessions": sessions, "encoded": vectors.encoded_now, "items": vectors.items}


def bad_input(engine, table: str, path: Path, data: Path, corpus_catalog: Path) -> dict:
    """One bad-input case validated into `data` (events against the corpus's catalog, validated once per engine into
    `corpus_catalog`): the counts, or the one error it is."""
    from rec_pipeline.engines.layout import TableFolders, partitions, raw_files
    from rec_pipeline.engines.steps import ValidationJob
    from rec_pipeline.schema import DataFormatError
    from rec_pipeline.validation import ValidationSettings
    from tests.bad_input_cases import CORPUS

    settings = ValidationSettings(now=NOW)
    validated = data / "validated"
    try:
        if table == "catalog":
            report = engine.validate(ValidationJob("catalog", "canonical", tuple(raw_files(path, partitioned=False)), settings, TableFolders.under(validated, "catalog", False)))
        else:
            if not (corpus_catalog / "catalog.parquet").exists():
                engine.validate(ValidationJob("catalog", "canonical", tuple(raw_files(CORPUS / "catalog.jsonl", partitioned=False)), settings,
                                              TableFolders.under(corpus_catalog, "catalog", False)))
            files = raw_files(path)
            report = engine.validate(ValidationJob("events", "canonical", tuple(files), settings, TableFolders.under(validated, "events", True), salt=SALT,
                                                   keep=tuple(partitions(files)), catalog=str(corpus_catalog / "catalog.parquet")))
    except DataFormatError as err:
        return {"error": str(err)}
    totals = report.totals()
    return {"rows_in": totals.rows_in, "rows_valid": totals.rows_valid}


def main_job(project: Path, conf: dict) -> dict:
    """The `main` job on the project, every asset, with the spark engine on `conf`'s cluster."""
    os.environ["DAGSTER_HOME"] = str(project / ".dagster_home")
    import dagster as dg

    from assets.engine import DataEngine
    from orchestration.definitions import build_definitions, default_resources
    from orchestration.run import every_day

    resources = {**default_resources(str(project)), "engine": DataEngine(name="spark", spark_conf=conf)}
    job = build_definitions(resources).resolve_job_def("main")
    with dg.DagsterInstance.get() as instance:
        tags = every_day(instance, job, resources["store"], resources["source"])
        started = time.perf_counter()
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
        errors = [e.event_specific_data.error.to_string()[-3000:] for e in result.all_events if e.is_failure and getattr(e.event_specific_data, "error", None)]
        return {
            "success": result.success, "seconds": round(time.perf_counter() - started, 1), "errors": errors,
            "materialised": sorted({e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}),
            "checks": {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()},
            "engines": {e.asset_key.to_user_string(): e.materialization.metadata["engine"].value for e in result.get_asset_materialization_events()
                        if "engine" in e.materialization.metadata},
        }


def cli_validate(events: Path, engine: str, master: str) -> dict:
    """What `rec-pipeline validate` prints for the corpus catalog and `events` on `engine`."""
    import contextlib
    import io

    from rec_pipeline.cli import main as cli
    from tests.bad_input_cases import CORPUS

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli(["validate", "--events", str(events), "--catalog", str(CORPUS / "catalog.jsonl"), "--engine", engine,
                    "--spark-conf", f"spark.master={master}", "--spark-conf", "spark.ui.enabled=false"])
    return {"exit": code, **json.loads(printed.getvalue())}


def processes_left() -> list[str]:
    """Every process in this PID namespace but this one (its init), by command line."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            left.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:200])
        except OSError:  # ended while listed
            continue
    return [p for p in left if p]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    for name in ("--out", "--default-raw", "--cases", "--models", "--project"):
        parser.add_argument(name, type=Path, required=True)
    args = parser.parse_args(argv)
    from rec_pipeline.engines import make_engine
    from rec_pipeline.engines.standalone import StandaloneCluster, start_session, stop_session
    from tests.bad_input_cases import every_case

    report: dict = {}
    try:
        with StandaloneCluster(workers=2, cores=1, log_dir=args.out / "spark-logs") as cluster:
            report["cluster"] = {"url": cluster.url, "workers": cluster.workers, "started_in_s": round(cluster.started_in_s, 1)}
            spark = start_session(cluster.conf())
            engines = {"local": make_engine("local"), "spark": make_engine("spark", spark)}
            for name, engine in engines.items():
                started = time.perf_counter()
                report[f"default_{name}"] = stages(engine, args.default_raw, args.out / "default" / name, args.models, SALT, NOW)
                report[f"default_{name}"]["seconds"] = round(time.perf_counter() - started, 1)
            # Counted once the stages ran: right after the session starts, a loaded machine may not have registered
            # the executors yet (CI once counted 0 there).
            report["executors"] = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1  # less the driver
            report["cases"] = {}
            started = time.perf_counter()
            for case, table, path in every_case(args.cases):
                report["cases"][case] = {name: bad_input(engine, table, path, args.out / "cases" / case / name, args.out / "cases" / f"corpus_catalog_{name}")
                                         for name, engine in engines.items()}
                report["cases"][case]["table"] = table
            report["cases_seconds"] = round(time.perf_counter() - started, 1)
            report["main_job"] = main_job(args.project, cluster.conf())
            stop_session(spark)
            # `rec-pipeline validate --engine spark` against the cluster, beside the local engine's answer.
            case = dict((name, (table, path)) for name, table, path in every_case(args.cases))["values_not_text"]
            report["cli_validate"] = {name: cli_validate(case[1], name, cluster.url) for name in ("local", "spark")}
            # 4. Spark Connect: a Connect server on the cluster, and a case validated through `spark.remote`.
            started = time.perf_counter()
            cluster.connect_server(port=15002)
            from pyspark.sql import SparkSession

            remote = SparkSession.builder.remote("sc://127.0.0.1:15002").getOrCreate()
            case = dict((name, (table, path)) for name, table, path in every_case(args.cases))["repeated_across_days"]
            report["connect"] = bad_input(make_engine("spark", remote), *case, args.out / "connect", args.out / "connect_catalog")
            report["connect"]["seconds"] = round(time.perf_counter() - started, 1)
            remote.stop()
    except Exception:
        report["failure"] = traceback.format_exc()
    report["processes_left"] = processes_left()
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return 1 if "failure" in report else 0


if __name__ == "__main__":
    sys.exit(main())
