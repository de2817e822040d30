"""The `rec-pipeline` command: generate and validate, with clear errors for bad input."""

import json
import shutil
from pathlib import Path

import pytest

from rec_pipeline.cli import main

CORPUS = Path(__file__).parent / "bad_inputs"


def test_generate_writes_the_requested_size(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--items", "120", "--users", "60", "--events", "2000", "--days", "10", "--seed", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["items"] == 120 and 1800 <= summary["events"] <= 2200
    assert len(list((tmp_path / "events").glob("events-*.jsonl"))) == 10
    with pytest.raises(FileExistsError):
        main(["generate", "--out", str(tmp_path), "--size", "small"])


def test_append_day_adds_the_next_daily_file_with_fresh_ids(tmp_path, capsys):
    size = ["--items", "120", "--users", "60", "--events", "2000", "--days", "10", "--seed", "3"]
    assert main(["generate", "--out", str(tmp_path), *size]) == 0
    before = {json.loads(line)["event_id"] for f in (tmp_path / "events").iterdir() for line in f.read_text().splitlines()}
    capsys.readouterr()
    assert main(["generate", "--out", str(tmp_path), *size, "--append-day"]) == 0
    appended = Path(json.loads(capsys.readouterr().out)["appended"])
    assert appended.name == "events-2025-09-11.jsonl"  # the day after the 10 days from 2025-09-01
    rows = [json.loads(line) for line in appended.read_text().splitlines()]
    assert rows and all(r["ts"].startswith("2025-09-11") for r in rows)
    assert not {r["event_id"] for r in rows} & before
    assert main(["generate", "--out", str(tmp_path / "empty"), "--append-day"]) == 2
    assert "no daily event files to extend" in capsys.readouterr().err


def test_validate_reports_what_would_be_quarantined(tmp_path, capsys):
    shutil.copy(CORPUS / "events_unknown_item.jsonl", tmp_path / "events.jsonl")
    assert main(["validate", "--events", str(tmp_path / "events.jsonl"), "--catalog", str(CORPUS / "catalog.jsonl")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events"]["rows_in"] == 2 and report["events"]["rows_quarantined"] == 1
    assert report["events"]["quarantined_by_rule"] == {"unknown_item": 1}
    assert report["events"]["sample"][0]["reason"] == "item_id 'i404' is not in the catalog"
    assert report["catalog"]["rows_valid"] == 3


def test_validate_names_the_file_row_and_field_of_unreadable_input(capsys):
    code = main(["validate", "--events", str(CORPUS / "events_missing_column.csv"), "--catalog", str(CORPUS / "catalog.jsonl")])
    assert code == 2
    assert "events_missing_column.csv, row 1, field 'event_type': missing column(s) 'event_type'" in capsys.readouterr().err
