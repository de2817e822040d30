"""The two engines hold to one answer: the default data and every bad-input class through the local engine (pandas, in
process) and the spark engine on a real Spark standalone cluster (a master and two workers, started here in a network
namespace of their own) give the same valid rows, the same quarantined rows with the same file, row, rule and reason,
the same splits and search sessions, and item vectors within 1e-5; the `main` job materialises with the spark engine
against the cluster; and every process the cluster test started has ended.

Also, local only: a new day validated alone, against the key index of the days before it, gives what validating every
day at once gives."""

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.embeddings import read_vectors
from rec_pipeline.engines import make_engine
from rec_pipeline.engines.layout import TableFolders, partitions, raw_files
from rec_pipeline.engines.standalone import isolated, isolation_missing, java_missing
from rec_pipeline.engines.steps import ValidationJob
from rec_pipeline.generate import GeneratorConfig, append_day, generate
from rec_pipeline.storage import read_table
from rec_pipeline.validation import ValidationSettings
from rec_pipeline.versioning import init_dvc_repo
from tests.spark_cluster import NOW, SALT, stages

REPO = Path(__file__).resolve().parents[1]
TABLES = ["validated/catalog.parquet", "validated/catalog_quarantine.parquet", "validated/events.parquet", "validated/events_quarantine.parquet",
          "splits/interactions.parquet", "splits/users.parquet", "splits/search_sessions.parquet"]
CLUSTER_TIMEOUT_S = 1500


def require_spark() -> None:
    reason = java_missing() or isolation_missing()
    if reason is None:
        return
    if os.environ.get("REC_PIPELINE_REQUIRE_SERVICES") == "1":
        pytest.fail(reason + " (REC_PIPELINE_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory, seed_encoder):
    """One run of tests/spark_cluster.py in its own network namespace: the cluster, both engines, the main job."""
    require_spark()
    work = tmp_path_factory.mktemp("engines")
    generate(work / "default_raw", GeneratorConfig())
    seed_encoder(work / "models")
    project = work / "project"
    project.mkdir()
    init_dvc_repo(project, work / "dvc_remote")
    generate(project / "data" / "raw", GeneratorConfig.small())
    seed_encoder(project / "data" / "models")
    (project / ".dagster_home").mkdir()
    shutil.copy(REPO / ".dagster_home" / "dagster.yaml", project / ".dagster_home" / "dagster.yaml")
    out = work / "out"
    out.mkdir()
    done = isolated(
        [sys.executable, "-m", "tests.spark_cluster", "--out", str(out), "--default-raw", str(work / "default_raw"), "--cases", str(work / "cases"),
         "--models", str(work / "models"), "--project", str(project)],
        cwd=REPO, capture_output=True, text=True, timeout=CLUSTER_TIMEOUT_S, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    report_file = out / "report.json"
    assert report_file.exists(), f"the cluster run wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    report = json.loads(report_file.read_text())
    assert "failure" not in report, report["failure"]
    return work, report


def same_tables(left: Path, right: Path, tables=TABLES) -> None:
    for table in tables:
        pd.testing.assert_frame_equal(read_table(left / table), read_table(right / table), obj=table)


def same_vectors(left: Path, right: Path) -> None:
    keys_l, vectors_l = read_vectors(left / "embeddings" / "item_embeddings.parquet")
    keys_r, vectors_r = read_vectors(right / "embeddings" / "item_embeddings.parquet")
    pd.testing.assert_frame_equal(keys_l, keys_r)
    assert np.abs(vectors_l - vectors_r).max() <= 1e-5


def test_the_cluster_ran_two_workers_and_every_process_it_started_ended(cluster_run):
    _, report = cluster_run
    assert report["cluster"]["workers"] == 2 and report["executors"] == 2
    assert report["cluster"]["url"] == "spark://127.0.0.1:7077"
    # The harness is its namespace's init: nothing else may be left running once it stopped the cluster and its driver.
    assert report["processes_left"] == []


def test_the_default_data_gives_the_same_tables_and_vectors_on_both_engines(cluster_run):
    work, report = cluster_run
    local, spark = work / "out" / "default" / "local", work / "out" / "default" / "spark"
    assert report["default_spark"]["splits"] == report["default_local"]["splits"]
    assert report["default_spark"]["sessions"] == report["default_local"]["sessions"]
    assert report["default_local"]["encoded"] == report["default_spark"]["encoded"] == report["default_local"]["items"] == 3000
    same_tables(local, spark)
    same_vectors(local, spark)
    # The data hold every rule's quarry: repeated event ids (a retrying client) and delisted items.
    quarantine = read_table(local / "validated" / "events_quarantine.parquet")
    assert set(quarantine["rule"]) == {"duplicate_event_id", "unknown_item"}


def test_every_bad_input_class_gives_the_same_rows_or_the_same_error_on_both_engines(cluster_run):
    work, report = cluster_run
    assert len(report["cases"]) >= 25
    errors = 0
    for case, outcome in report["cases"].items():
        assert outcome["local"] == outcome["spark"], case
        if "error" in outcome["local"]:
            errors += 1
            continue
        folder = work / "out" / "cases" / case
        tables = [t for t in TABLES if t.startswith("validated/") and outcome["table"] in t]
        same_tables(folder / "local", folder / "spark", tables)
        quarantine = read_table(folder / "spark" / "validated" / f"{outcome['table']}_quarantine.parquet")
        assert quarantine[["source_file", "source_row", "rule", "reason"]].notna().all().all(), case
    assert errors >= 6  # the empty, header-only, broken, truncated, corrupt and damaged files: one error each
    # Across days: the first occurrence is kept whichever engine looked, and the repeat names where it was first seen.
    repeated = read_table(work / "out" / "cases" / "repeated_across_days" / "spark" / "validated" / "events_quarantine.parquet")
    assert list(zip(repeated["source_file"], repeated["source_row"], repeated["rule"])) == [
        ("events-2025-09-01.jsonl", 2, "duplicate_event_id"), ("events-2025-09-02.jsonl", 1, "duplicate_event_id"),
        ("events-2025-09-02.jsonl", 3, "negative_price"),
    ]
    assert repeated["reason"].iloc[1] == "event_id 'e3' repeats: first seen at events-2025-09-01.jsonl row 3"


def test_the_validate_command_on_the_cluster_prints_what_the_local_engine_prints(cluster_run):
    _, report = cluster_run
    local, spark = report["cli_validate"]["local"], report["cli_validate"]["spark"]
    assert local["exit"] == spark["exit"] == 0
    assert local["engine"] == "local (pandas, this process)" and spark["engine"] == "spark (spark://127.0.0.1:7077)"
    assert {k: v for k, v in spark.items() if k != "engine"} == {k: v for k, v in local.items() if k != "engine"}
    assert spark["events"]["quarantined_by_rule"] == {"not_text": 5}


def test_spark_connect_gives_the_same_answer(cluster_run):
    work, report = cluster_run
    assert report["connect"] == {**report["cases"]["repeated_across_days"]["spark"], "seconds": report["connect"]["seconds"]}
    same_tables(work / "out" / "connect", work / "out" / "cases" / "repeated_across_days" / "local", ["validated/events.parquet", "validated/events_quarantine.parquet"])


def test_the_main_job_materialises_on_the_cluster_with_the_local_engines_answers(cluster_run, tmp_path):
    work, report = cluster_run
    job = report["main_job"]
    assert job["success"], "\n".join(job["errors"])
    assert {"validated_events", "training_splits", "ranker", "ranker_onnx", "search_ranker", "eval_report"} <= set(job["materialised"])
    assert all(job["checks"].values()), job["checks"]
    assert set(job["engines"]) == {"validated_catalog", "validated_events", "training_splits", "search_sessions", "item_embeddings"}
    assert all(engine == "spark (spark://127.0.0.1:7077)" for engine in job["engines"].values())
    project = work / "project"
    salt = (project / "data" / ".user_id_salt").read_text().strip()
    shutil.copytree(project / "data" / "models", tmp_path / "models")
    stages(make_engine("local"), project / "data" / "raw", tmp_path / "local", tmp_path / "models", salt, NOW)
    same_tables(project / "data", tmp_path / "local")
    same_vectors(project / "data", tmp_path / "local")


def test_a_new_day_validated_alone_gives_what_every_day_at_once_gives(tmp_path):
    raw = tmp_path / "raw"
    config = GeneratorConfig.small()
    generate(raw, config)
    new_file = append_day(raw, config)
    # The new day repeats an event id of an earlier day and one of its own: both repeats are quarantined.
    lines = new_file.read_text().splitlines()
    earlier = json.loads((raw / "events" / "events-2025-09-03.jsonl").read_text().splitlines()[5])
    lines += [json.dumps({**json.loads(lines[0]), "event_id": earlier["event_id"]}), lines[1]]
    new_file.write_text("\n".join(lines) + "\n")
    engine, settings = make_engine("local"), ValidationSettings(now=NOW)

    def validate(folder: Path, days: list[str] | None) -> None:
        engine.validate(ValidationJob("catalog", "canonical", tuple(raw_files(raw / "catalog", False)), settings, TableFolders.under(folder, "catalog", False)))
        files = raw_files(raw / "events")
        every = partitions(files)
        run = days or every
        engine.validate(ValidationJob("events", "canonical", tuple(f for f in files if f.partition in run), settings, TableFolders.under(folder, "events", True),
                                      salt=SALT, history=tuple(d for d in every if d not in run and d < max(run)), keep=tuple(every),
                                      catalog=str(folder / "catalog.parquet")))

    validate(tmp_path / "at_once", None)
    shutil.copytree(tmp_path / "at_once", tmp_path / "by_day")
    shutil.rmtree(tmp_path / "by_day" / "events.parquet" / "2025-09-21")
    validate(tmp_path / "by_day", ["2025-09-21"])
    for table in ("events.parquet", "events_quarantine.parquet", "events_keys.parquet"):
        pd.testing.assert_frame_equal(read_table(tmp_path / "at_once" / table), read_table(tmp_path / "by_day" / table), obj=table)
    quarantine = read_table(tmp_path / "by_day" / "events_quarantine.parquet" / "2025-09-21").tail(2)
    assert list(quarantine["rule"]) == ["duplicate_event_id", "duplicate_event_id"]
    assert "first seen at events-2025-09-03.jsonl row " in quarantine["reason"].iloc[0]
    assert "first seen at events-2025-09-21.jsonl row 2" in quarantine["reason"].iloc[1]
