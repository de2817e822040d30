"""DVC versioning of raw data: `dvc add` outside a pipeline, the same md5 without writing inside `dvc repro`."""

import hashlib

import pytest

from rec_pipeline.schema import DataFormatError
from rec_pipeline.versioning import dvc_md5, dvc_track, init_dvc_repo


@pytest.fixture
def repo(tmp_path):
    init_dvc_repo(tmp_path, tmp_path / "remote")
    raw = tmp_path / "data" / "raw" / "events"
    raw.mkdir(parents=True)
    (raw / "day-1.jsonl").write_text('{"event_id": "e1"}\n')
    return tmp_path, raw


def test_dvc_add_records_a_directory_md5_that_follows_the_content(repo):
    root, raw = repo
    first = dvc_track(raw, root)
    assert first.endswith(".dir") and dvc_md5(raw) == first
    assert dvc_track(raw, root) == first
    (raw / "day-2.jsonl").write_text('{"event_id": "e2"}\n')
    assert dvc_track(raw, root) not in (first, None)


def test_a_single_file_md5_is_the_md5_of_its_bytes(repo):
    root, raw = repo
    path = raw / "day-1.jsonl"
    assert dvc_track(path, root) == hashlib.md5(path.read_bytes()).hexdigest()


def test_inside_a_dvc_stage_the_md5_is_computed_without_writing(repo, monkeypatch):
    root, raw = repo
    tracked = dvc_track(raw, root)
    (raw / "day-2.jsonl").write_text('{"event_id": "e2"}\n')
    monkeypatch.setenv("DVC_STAGE", "validated_data")
    inside = dvc_track(raw, root)
    assert dvc_md5(raw) == tracked  # the pointer file was left alone
    monkeypatch.delenv("DVC_STAGE")
    assert dvc_track(raw, root) == inside  # and the dry run gave what `dvc add` records


def test_raw_data_outside_the_repository_or_missing_is_refused(repo, tmp_path_factory):
    root, _ = repo
    outside = tmp_path_factory.mktemp("elsewhere")
    with pytest.raises(DataFormatError, match="inside the DVC repository"):
        dvc_track(outside, root)
    with pytest.raises(DataFormatError, match="no such file or folder"):
        dvc_track(root / "data" / "nope", root)
