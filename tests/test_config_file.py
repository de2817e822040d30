"""The project's config file: your own data without editing code. A canonical data set from the 1990s with a short
tail runs through the demo with only the config file written, and its report warns where a segment is too small;
a config file that cannot be used is one error naming the file and the key, never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from orchestration.run import main as demo
from rec_pipeline.generate import GeneratorConfig, generate
from tests.test_dvc_repro import copy_of_repo

def nineties_shop(folder: Path) -> dict:
    """A canonical data set whose events run from 1997 to 1998, with a thin tail: its last ten days hold 5% of what
    they would, as a public log that stops being collected does. Events as one CSV, the catalog as Parquet."""
    generated = folder / "generated"
    generate(generated, GeneratorConfig.small())
    shift = pd.Timestamp("2025-09-01", tz="UTC") - pd.Timestamp("1997-09-01", tz="UTC")
    events = pd.concat(pd.read_json(f, lines=True, dtype=False) for f in sorted((generated / "events").glob("*.jsonl")))
    ts = pd.to_datetime(events["ts"], utc=True, format="ISO8601") - shift
    tail = ts > ts.max() - pd.Timedelta(days=10)
    keep = ~tail | (pd.Series(range(len(events)), index=events.index) % 20 == 0)
    events = events.assign(ts=ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))[keep.to_numpy()]
    catalog = pd.read_json(generated / "catalog" / "catalog.jsonl", lines=True, dtype=False)
    catalog["first_seen"] = (pd.to_datetime(catalog["first_seen"], utc=True, format="ISO8601") - shift).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    raw = folder / "data" / "raw" / "ratings"
    raw.mkdir(parents=True)
    events.to_csv(raw / "events.csv", index=False)
    catalog.to_parquet(raw / "catalog.parquet")
    return {"events": len(events), "first": ts.min(), "last": ts.max()}


def test_a_1990s_data_set_runs_with_only_the_config_file_and_the_report_warns_on_small_segments(tmp_path, seed_encoder):
    root = copy_of_repo(tmp_path / "repo", seed_encoder)
    shop = nineties_shop(root)
    config = root / "ratings.yaml"
    config.write_text(yaml.safe_dump({
        "resources": {"source": {"config": {"events_path": "data/raw/ratings/events.csv", "catalog_path": "data/raw/ratings/catalog.parquet"}}},
    }))
    env = {**os.environ, "DAGSTER_HOME": str(root / ".dagster_home"), "REC_PIPELINE_EXECUTOR": "in_process"}  # one process a run
    done = subprocess.run([sys.executable, "-m", "orchestration.run", "--config", str(config)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert not (root / "data" / "raw" / "events").exists()  # the default data were not generated beside it

    # Nothing quarantined for its date: the documented earliest_ts default (1990-01-01) lets the 1990s through.
    validated = pd.read_parquet(root / "data/validated/events.parquet")
    quarantine = pd.read_parquet(root / "data/validated/events_quarantine.parquet")
    assert len(validated) + len(quarantine) == shop["events"] and "ts_out_of_window" not in set(quarantine["rule"])
    assert validated["ts"].min().year == 1997

    # The split followed the data: a tenth of the interactions each, though the tail is thin.
    summary = json.loads((root / "data/splits/summary.json").read_text())
    total = summary["train_interactions"] + summary["validation_interactions"] + summary["test_interactions"]
    assert 0.05 < summary["test_interactions"] / total < 0.2 and summary["test_start"][:4] in ("1997", "1998")

    # The report names every segment with fewer than 50 users, in its figures, Markdown and HTML and in the printout.
    figures = json.loads((root / "data/reports/eval_report/report.json").read_text())
    small = {name for name, s in figures["segments"].items() if 0 < s["users"] < figures["min_segment_users"]}
    assert small and {name for name, s in figures["segments"].items() if s["too_few_users"]} == small
    markdown = (root / "data/reports/eval_report/summary.md").read_text()
    page = (root / "data/reports/eval_report/report.html").read_text()
    for name in small:
        assert f"TOO FEW USERS: the {name} segment has" in markdown and f"TOO FEW USERS: the {name} segment has" in page
        assert f"TOO FEW USERS: the {name} segment has" in done.stdout


@pytest.mark.parametrize("text, message", [
    ("resources: [1, 2]\n", "'resources' must be a mapping"),
    ("sources: {}\n", "unknown top-level key(s) 'sources'; expected resources, ops"),
    ("resources: {sauce: {config: {}}}\n", "unknown resource(s) 'sauce'"),
    ("resources: {policy: {config: {earliest: '1990-01-01'}}}\n", "resources.policy: unknown setting(s) 'earliest'"),
    ("resources: {source: {config: {format: excel}}}\n", "resources.source: format: Input should be 'canonical' or 'online_retail'"),
    ("ops: {trainig_splits: {config: {}}}\n", "unknown asset(s) under ops: 'trainig_splits'"),
    ("ops: {training_splits: {config: {test_share: lots}}}\n", "invalid settings:"),
    ("ops: {training_splits: [1]}\n", "'ops.training_splits' must be {config: {setting: value, ...}}"),
    ("resources: {policy: {config: {max_quarantine_share: 0.1}\n", "not valid YAML"),
])
def test_a_config_file_that_cannot_be_used_is_one_error_naming_it(tmp_path, capsys, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    before = os.environ.get("REC_PIPELINE_CONFIG")
    assert demo(["--config", str(path), "--assets", "raw_events"]) == 2
    assert os.environ.get("REC_PIPELINE_CONFIG") == before  # nothing of the failed call is left for later processes
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err and "Traceback" not in err


def test_print_config_lists_every_setting_with_the_library_default(capsys):
    from rec_pipeline.report import ReportConfig
    from rec_pipeline.splits import SplitConfig
    from rec_pipeline.validation import ValidationSettings

    assert demo(["--print-config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["resources"]["policy"]["config"]["earliest_ts"] == ValidationSettings.earliest_ts == "1990-01-01"
    assert config["ops"]["training_splits"]["config"]["positive_events"] == list(SplitConfig.positive_events)
    assert config["ops"]["eval_report"]["config"]["min_segment_users"] == ReportConfig.min_segment_users
    assert config["ops"]["ranker"]["config"]["weight_decay"] == 0.0 and config["ops"]["ranker"]["config"]["dropout"] == 0.1
