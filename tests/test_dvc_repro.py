"""`dvc repro` on a copy of the project: every stage materialises through Dagster, and after one raw file changes
exactly the stages downstream of it run again."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from rec_pipeline.generate import GeneratorConfig, generate

REPO = Path(__file__).resolve().parents[1]
ALL_STAGES = {"validated_data", "item_embeddings", "training_splits", "ranker", "ranker_onnx", "search", "eval_report"}


def repro(root: Path) -> set[str]:
    # The stages call `python`: the one running these tests, with the project installed.
    # One process per stage, not one more per step: the executor is not what this test is about.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "REC_PIPELINE_EXECUTOR": "in_process"}
    env.pop("DAGSTER_HOME", None)  # each stage uses the copy's own .dagster_home, as on a clone
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return set(re.findall(r"Running stage '([^']+)'", done.stdout))


def copy_of_repo(root: Path, seed_encoder) -> Path:
    """The repository's tracked files in `root`, a git repository of its own, without the default data's DVC
    pointers, holding the checked encoder export (tests/conftest.py)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if not name.startswith("data/raw/"):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    seed_encoder(root / "data" / "models")
    return root


def small_copy_of_repo(root: Path, seed_encoder) -> Path:
    """`copy_of_repo` with the small generated data set in place of the default data."""
    copy_of_repo(root, seed_encoder)
    generate(root / "data" / "raw", GeneratorConfig.small())
    return root


def test_dvc_repro_reruns_only_what_a_changed_raw_file_feeds(tmp_path, seed_encoder):
    root = small_copy_of_repo(tmp_path / "repo", seed_encoder)

    assert repro(root) == ALL_STAGES
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    before = {stage: data["outs"] for stage, data in lock["stages"].items()}

    # Five events of one day never happened: the events change, the catalog does not.
    day = sorted((root / "data/raw/events").iterdir())[3]
    rows = [json.loads(line) for line in day.read_text().splitlines()][:-5]
    day.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # item_embeddings reruns (it reads the splits, to fine-tune the encoder's top when asked), encodes nothing, and
    # keeps its outputs' hashes, so nothing downstream reruns for it.
    assert repro(root) == ALL_STAGES

    after = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    events_dep = {d["path"]: d["md5"] for d in after["validated_data"]["deps"]}["data/raw/events"]
    assert events_dep != {d["path"]: d["md5"] for d in lock["stages"]["validated_data"]["deps"]}["data/raw/events"]
    assert after["item_embeddings"]["outs"] == before["item_embeddings"]
    assert after["ranker"]["outs"] != before["ranker"]

    # The lineage of each registered model shows dvc.lock's md5s beside the chain; only the second model was trained
    # from the raw bytes the lock now records.
    def raw_events_node(version: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
        done = subprocess.run([sys.executable, "-m", "orchestration.lineage", version, "--json"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout)
        assert result["dvc_lock"] == str(root / "dvc.lock")
        assert result["chain"]["dvc_lock_outs"] == {o["path"]: o["md5"] for o in after["ranker_onnx"]["outs"]}
        nodes, todo = [], [result["chain"]]
        while todo:
            nodes.append(todo.pop())
            todo.extend(nodes[-1].get("upstream", []))
        [raw] = {json.dumps(n, sort_keys=True): n for n in nodes if n["asset"] == "raw_events"}.values()
        return raw

    latest = raw_events_node("2")
    assert latest["dvc_lock_md5"] == events_dep and latest["dvc_lock_matches"] is True
    first = raw_events_node("1")
    assert first["dvc_lock_md5"] == events_dep and first["dvc_lock_matches"] is False
