"""`python -m bench.pipeline`: wall time and peak memory of a full materialisation at 1x, 3x and 10x the events.

Each size is a fresh project (a DVC repository with its own Dagster instance and MLflow store) under
data/bench/pipeline/, holding generated data with the default catalog (3,000 items) and `scale` times the default
events and users, so a user's history keeps its length. Every asset of the `main` job is materialised through Dagster
in one process per size, so that process's peak resident memory is the run's. Prints one JSON line:

    {"bench": "pipeline", "sizes": [{"scale": 1, "events": ..., "wall_s": ..., "peak_rss_mb": ..., "asset_s": {...}}, ...],
     "wall_ratio": ..., "events_ratio": ...}

wall_ratio = the largest size's wall time / the smallest's; events_ratio the same for events. `asset_s` splits the
wall time by asset: the item embeddings depend on the catalog only, so they cost the same at every size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def materialise(root: Path, scale: int, seed: int) -> dict:
    """Generate the data for `scale` into a fresh project at `root` and materialise every asset; figures of the run."""
    from rec_pipeline.generate import GeneratorConfig, generate
    from rec_pipeline.versioning import init_dvc_repo

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    init_dvc_repo(root, root / "dvc_remote")
    default = GeneratorConfig()
    summary = generate(root / "data" / "raw", GeneratorConfig(seed=seed, n_events=default.n_events * scale, n_users=default.n_users * scale))
    home = root / ".dagster_home"
    home.mkdir()
    shutil.copy(ROOT / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)

    import dagster as dg

    from orchestration.definitions import build_definitions, default_resources
    from orchestration.run import every_day

    resources = default_resources(str(root))
    job = build_definitions(resources).resolve_job_def("main")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.DagsterInstance.get() as instance:
        tags = every_day(instance, job, resources["store"], resources["source"])
        started = time.perf_counter()
        result = job.execute_in_process(run_config=quiet, instance=instance, tags=tags, raise_on_error=False)
        wall = time.perf_counter() - started
    if not result.success:
        raise SystemExit(f"the run at scale {scale} failed: see {home}")
    steps = {
        event.step_key: round(event.event_specific_data.duration_ms / 1000, 1)
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_SUCCESS
    }
    return {
        "scale": scale,
        "events": summary["events"],
        "users": summary["users"],
        "items": summary["items"],
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),  # Linux reports KiB
        "asset_s": steps,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,3,10", help="comma-separated multiples of the default events")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "bench" / "pipeline")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args(argv)

    if args.one is not None:
        print(json.dumps(materialise(args.work_dir / f"scale_{args.one}", args.one, args.seed)))
        return 0
    sizes = []
    for scale in (int(s) for s in args.scales.split(",")):
        # One process per size: its peak memory is that size's alone.
        done = subprocess.run(
            [sys.executable, "-m", "bench.pipeline", "--one", str(scale), "--seed", str(args.seed), "--work-dir", str(args.work_dir)],
            cwd=ROOT, capture_output=True, text=True,
        )
        if done.returncode != 0:
            sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
            return done.returncode
        sizes.append(json.loads(done.stdout.strip().splitlines()[-1]))
    first, last = sizes[0], sizes[-1]
    print(json.dumps({
        "bench": "pipeline",
        "sizes": sizes,
        "events_ratio": round(last["events"] / first["events"], 2),
        "wall_ratio": round(last["wall_s"] / first["wall_s"], 2),
        "peak_rss_ratio": round(last["peak_rss_mb"] / first["peak_rss_mb"], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
