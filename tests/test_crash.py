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
from tests.test_pipeline import REPO, instance, new_project, project, run_main  # noqa: F401 (fixtures)


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


def daemon_passes(instance: dg.DagsterInstance) -> None:
    """What `dagster-daemon`'s monitoring daemon does each poll: check every started run's worker, free the slots of
    runs that ended."""
    import logging
    from types import SimpleNamespace

    from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    logger = logging.getLogger("run_monitoring")
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        monitor_started_run(instance, None, record, logger)
    list(execute_concurrency_slots_iteration(SimpleNamespace(instance=instance), logger))


def test_the_local_launcher_tells_a_live_run_worker_from_a_dead_one(project, instance):
    root, _ = project
    assert instance.run_monitoring_enabled and type(instance.run_launcher).__name__ == "LocalRunLauncher"
    # This process ran the run: its worker pid is alive, and a run whose pid is gone is not.
    result = run_main(root, instance, dg.AssetSelection.assets("raw_events"))
    run = instance.get_run_by_id(result.run_id)
    assert instance.run_launcher.check_run_worker_health(run).status.value == "RUNNING"


def test_sigkill_in_the_ranker_step_leaves_the_last_complete_model_and_a_rerun_completes(project, instance):
    root, _ = project
    assert run_main(root, instance).success
    model_dir = root / "data" / "models" / "ranker"
    before = {p.name: p.read_bytes() for p in model_dir.iterdir()}

    # The same job in its own process, on the same instance, with a long schedule so the kill lands mid-training.
    script = (
        "import dagster as dg\n"
        "from orchestration.definitions import build_definitions, default_resources\n"
        "from orchestration.run import every_day\n"
        f"resources = default_resources({str(root)!r})\n"
        "job = build_definitions(resources).resolve_job_def('main')\n"
        "instance = dg.DagsterInstance.get()\n"
        "job.execute_in_process(instance=instance, tags=every_day(instance, job, resources['store'], resources['source']), "
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

    # The killed run still holds the `gpu` pool's only slot. Run monitoring (on in .dagster_home/dagster.yaml) frees it:
    # one pass of the daemon's monitoring marks the run failed (LocalRunLauncher sees its worker is gone), and its
    # slot-freeing pass frees the slot free_slots_after_run_end_seconds later. A live run is left alone.
    [dead] = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert instance.event_log_storage.get_concurrency_run_ids() == {dead.run_id}
    assert instance.run_launcher.check_run_worker_health(dead).status.value == "FAILED"
    daemon_passes(instance)
    assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
    [failure] = instance.all_logs(dead.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    assert "is no longer running" in failure.dagster_event.message
    time.sleep(instance.run_monitoring_settings["free_slots_after_run_end_seconds"] + 1)
    daemon_passes(instance)
    assert instance.event_log_storage.get_concurrency_run_ids() == set()

    rerun = run_main(root, instance)
    assert rerun.success
    model, items = load_ranker(model_dir)
    assert model.config.n_items == len(items)
    assert not [p for p in model_dir.parent.iterdir() if p.name.startswith(".ranker.partial-")]
