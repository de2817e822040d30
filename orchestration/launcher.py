"""The local instance's run launcher: Dagster's DefaultRunLauncher plus the worker health check that run monitoring
needs to notice a dead run.

Dagster's daemon asks the run launcher whether each STARTED run's worker is alive; the DefaultRunLauncher cannot say,
so a run whose process was killed (SIGKILL, OOM, a closed laptop) stayed STARTED forever and kept its `gpu` pool slot.
This launcher answers from the run's own event log: the run worker's pid is on its RUN_START event, and a process
with that pid, started no later than that event, must still exist on this machine. With `run_monitoring` enabled in
.dagster_home/dagster.yaml, the daemon then marks the dead run failed and, `free_slots_after_run_end_seconds` later,
frees its concurrency slots. On Kubernetes the K8sRunLauncher answers the same question from the Job's status.
"""

from __future__ import annotations

import dagster as dg
import psutil
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.launcher.default_run_launcher import DefaultRunLauncher


class LocalRunLauncher(DefaultRunLauncher):
    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        started = self._instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
        if not started:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has no RUN_START event yet")
        entry = started[-1]
        pid = entry.dagster_event.pid
        try:
            process = psutil.Process(pid)
            # A pid is reused once its process is gone: the worker is the process that existed when the run started.
            alive = process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= entry.timestamp + 1
        except (psutil.NoSuchProcess, TypeError):
            alive = False
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, f"the run worker (pid {pid}) is no longer running")
