"""Crash safety: a run killed with SIGKILL while the ranker trains leaves no half-written model, and a re-run completes."""

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from rec_pipeline.ranker.model import load_ranker
from rec_pipeline.storage import atomic_folder
from tests.test_pipeline import REPO, instance, project, run_main  # noqa: F401 (fixtures)


def test_an_interrupted_folder_write_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target) as folder:
        (folder / "weights").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(target) as folder:
        (folder / "weights").write_text("new, half")
        raise RuntimeError("killed")
    assert [p.name for p in target.iterdir()] == ["weights"] and (target / "weights").read_text() == "old"
    with atomic_folder(target) as folder:
        (folder / "weights").write_text("new")
    assert (target / "weights").read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["model"]


def test_sigkill_in_the_ranker_step_leaves_the_last_complete_model_and_a_rerun_completes(project, instance):
    root, _ = project
    assert run_main(root, instance).success
    model_dir = root / "data" / "models" / "ranker"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}

    # The same job in its own process, on the same instance, with a long schedule so the kill lands mid-training.
    script = (
        "import dagster as dg\n"
        "from orchestration.definitions import build_definitions, default_resources\n"
        f"job = build_definitions(default_resources({str(root)!r})).resolve_job_def('main')\n"
        "job.execute_in_process(instance=dg.DagsterInstance.get(), "
        "run_config={'ops': {'ranker': {'config': {'epochs': 5000, 'patience': 5000}}}})\n"
    )
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    for line in worker.stdout:
        if "ranker - STEP_START" in line or time.monotonic() > deadline:
            break
    assert worker.poll() is None, "the run ended before the ranker step started"
    time.sleep(3)  # well into training: 5,000 epochs take many minutes
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=60) == -signal.SIGKILL

    # The model folder is the last complete one, loadable; nothing of the killed run was swapped in.
    assert {p.name: p.read_bytes() for p in model_dir.iterdir()} == before
    load_ranker(model_dir)

    # The killed run still holds the `gpu` pool's only slot, so a re-run would wait for it forever: mark the dead run
    # failed and free its slots.
    [dead] = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert instance.event_log_storage.get_concurrency_run_ids() == {dead.run_id}
    instance.report_run_failed(dead)
    instance.event_log_storage.free_concurrency_slots_for_run(dead.run_id)
    assert instance.event_log_storage.get_concurrency_run_ids() == set()

    rerun = run_main(root, instance)
    assert rerun.success
    model, items = load_ranker(model_dir)
    assert model.config.n_items == len(items)
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".ranker.partial-")]
