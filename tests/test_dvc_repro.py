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
ALL_STAGES = {"validated_data", "item_embeddings", "training_splits", "ranker", "ranker_onnx", "eval_report"}


def repro(root: Path) -> set[str]:
    # The stages call `python`: the one running these tests, with the project installed.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DAGSTER_HOME", None)  # each stage uses the copy's own .dagster_home, as on a clone
    done = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return set(re.findall(r"Running stage '([^']+)'", done.stdout))


def test_dvc_repro_reruns_only_what_a_changed_raw_file_feeds(tmp_path):
    root = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if name.startswith("data/raw/"):  # the default data's DVC pointers: this copy gets the small data set
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes((REPO / name).read_bytes())
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    generate(root / "data" / "raw", GeneratorConfig.small())

    assert repro(root) == ALL_STAGES
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    before = {stage: data["outs"] for stage, data in lock["stages"].items()}

    # Five events of one day never happened: the events change, the catalog does not.
    day = sorted((root / "data/raw/events").iterdir())[3]
    rows = [json.loads(line) for line in day.read_text().splitlines()][:-5]
    day.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert repro(root) == ALL_STAGES - {"item_embeddings"}

    after = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    events_dep = {d["path"]: d["md5"] for d in after["validated_data"]["deps"]}["data/raw/events"]
    assert events_dep != {d["path"]: d["md5"] for d in lock["stages"]["validated_data"]["deps"]}["data/raw/events"]
    assert after["item_embeddings"]["outs"] == before["item_embeddings"]
    assert after["ranker"]["outs"] != before["ranker"]
