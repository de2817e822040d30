"""`python -m bench.scale`: the data stages at 1x, 10x and 30x the default events through both engines, and what a new
day costs on top of each history.

Each scale is generated data (the default catalog of 3,000 items; `scale` times the default events and users over the
same 60 days, so a day holds `scale` times the events) under data/bench/scale/. Each (scale, engine) runs in a process
of its own, so its peak memory is its own:

- local: the stages in that process (pandas), its peak RSS the driver's;
- spark: the driver in that process and a Spark standalone cluster (a master and --workers workers of one core
  each, `rec_pipeline/engines/standalone.py`), all in a network namespace of their own; the driver's peak RSS is its
  Python process plus the JVM it starts (its child), the executors run on the workers.

Stages: validated_catalog, validated_events (every day), training_splits, search_sessions, item_embeddings (the
3,000 items, encoded from an empty cache at every scale). Then one new day of the 1x data's size (the same file at
every scale) is validated alone against each history's key index: the sensor's run after a day of logs lands. For the
local engine that is a fresh process, as the sensor's run is; for the spark engine the running session (a new
driver's start, 6-20 s, is the same at every scale).

Prints one JSON line:
    {"bench": "scale", "runs": [{"scale", "engine", "events", "stage_s": {...}, "driver_peak_rss_mb", "events_per_s_per_core",
      "s_per_million_events", "new_day_s"}, ...],
     "driver_rss_ratio_30x_over_1x": (spark), "s_per_million_ratio_30x_over_10x": (spark),
     "new_day_ratio_10x_over_1x": (local, the default engine), "new_day_ratio_10x_over_1x_spark": ...}
s_per_million_events counts the stages whose work grows with the events (validation, splits, sessions).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
NOW = pd.Timestamp("2026-12-01", tz="UTC")
SALT = "bench-scale"
EVENT_STAGES = ("validated_events", "training_splits", "search_sessions")


def raw_data(work: Path, scale: int) -> Path:
    """The generated data at `scale` (made once, kept between runs), plus the one new day every scale gets."""
    from rec_pipeline.generate import GeneratorConfig, append_day, generate

    default = GeneratorConfig()
    raw = work / f"raw_{scale}x"
    if not (raw / "events").is_dir():
        generate(raw, GeneratorConfig(n_events=default.n_events * scale, n_users=default.n_users * scale), overwrite=True)
    day_folder = work / "new_day"
    if not day_folder.is_dir():
        scratch = work / "raw_new_day"
        generate(scratch, default, overwrite=True)
        day_folder.mkdir(parents=True)
        shutil.move(str(append_day(scratch, default)), day_folder)
        shutil.rmtree(scratch)
    return raw


def run_stages(engine, raw: Path, data: Path, models: Path) -> dict:
    """The data stages, timed one by one; returns the timings."""
    from rec_pipeline.embeddings import ItemTextConfig
    from rec_pipeline.encoders import EncoderConfig, TextEncoder
    from rec_pipeline.engines.layout import TableFolders, partitions, raw_files
    from rec_pipeline.engines.steps import ValidationJob
    from rec_pipeline.splits import SplitConfig
    from rec_pipeline.validation import ValidationSettings

    settings, validated, seconds = ValidationSettings(now=NOW), data / "validated", {}

    def timed(name, call):
        started = time.perf_counter()
        out = call()
        seconds[name] = round(time.perf_counter() - started, 2)
        return out

    timed("validated_catalog", lambda: engine.validate(ValidationJob("catalog", "canonical", tuple(raw_files(raw / "catalog", partitioned=False)), settings,
                                                                     TableFolders.under(validated, "catalog", False))))
    files = raw_files(raw / "events")
    report = timed("validated_events", lambda: engine.validate(ValidationJob(
        "events", "canonical", tuple(files), settings, TableFolders.under(validated, "events", True), salt=SALT,
        keep=tuple(partitions(files)), catalog=str(validated / "catalog.parquet"))))
    summary = timed("training_splits", lambda: engine.training_splits(validated / "events.parquet", validated / "catalog.parquet", SplitConfig(), data / "splits"))
    timed("search_sessions", lambda: engine.search_sessions(validated / "events.parquet", pd.Timestamp(summary["validation_start"]),
                                                            pd.Timestamp(summary["test_start"]), data / "splits" / "search_sessions.parquet"))
    encoder = TextEncoder(EncoderConfig(), onnx_dir=models)
    timed("item_embeddings", lambda: engine.embed(validated / "catalog.parquet", encoder, ItemTextConfig(), data / "embeddings" / "cache" / f"{encoder.fingerprint}.parquet",
                                                  data / "embeddings" / "item_embeddings.parquet"))
    return {"events": report.totals().rows_in, "stage_s": seconds}


def new_day(engine, raw: Path, data: Path, day_folder: Path, repeats: int = 5) -> dict:
    """A new day lands: its file joins the raw folder and only its partition is validated, against the key index of
    every earlier day, as the sensor's run does: the median seconds of `repeats` validations, and the first's (which
    pays for the process's first use of its libraries)."""
    from rec_pipeline.engines.layout import TableFolders, partitions, raw_files
    from rec_pipeline.engines.steps import ValidationJob
    from rec_pipeline.validation import ValidationSettings

    [day_file] = sorted(day_folder.glob("events-*.jsonl"))
    shutil.copy(day_file, raw / "events" / day_file.name)
    try:
        every = raw_files(raw / "events")
        day = partitions([f for f in every if f.name == day_file.name])
        job = ValidationJob("events", "canonical", tuple(f for f in every if f.partition in day), ValidationSettings(now=NOW),
                            TableFolders.under(data / "validated", "events", True), salt=SALT, history=tuple(d for d in partitions(every) if d not in day),
                            keep=tuple(partitions(every)), catalog=str(data / "validated" / "catalog.parquet"))
        seconds = []
        for _ in range(repeats):  # each replaces the day's partition: the same work every time
            started = time.perf_counter()
            report = engine.validate(job)
            seconds.append(time.perf_counter() - started)
        return {"new_day_s": round(statistics.median(seconds), 3), "new_day_first_s": round(seconds[0], 3), "new_day_events": report.totals().rows_in,
                "history_days": len(job.history)}
    finally:
        (raw / "events" / day_file.name).unlink()


def one_run(args) -> dict:
    """One (scale, engine) in this process (for spark: inside its network namespace, with the cluster)."""
    from rec_pipeline.engines import make_engine

    work = args.work_dir
    raw = work / f"raw_{args.scale}x"
    data = work / f"data_{args.scale}x_{args.engine}"
    shutil.rmtree(data, ignore_errors=True)
    models = work / "models"
    if args.engine == "local":
        result = run_stages(make_engine("local"), raw, data, models)
        cores = 1  # pandas in one process: one core does the work
        jvm_mb = 0  # the new day is measured later, in a process of its own (main)
    else:
        from rec_pipeline.engines.standalone import StandaloneCluster, driver_jvm_peak_mb, start_session, stop_session

        with StandaloneCluster(workers=args.workers, cores=1, memory=args.worker_memory, log_dir=data / "spark-logs") as cluster:
            spark = start_session(cluster.conf(**{"spark.executor.memory": args.executor_memory}))
            try:
                engine = make_engine("spark", spark)
                result = run_stages(engine, raw, data, models)
                result.update(new_day(engine, raw, data, work / "new_day"))  # on the running session: its marginal cost
                jvm_mb = driver_jvm_peak_mb()  # the driver's JVM (a child of this process); executors run on the workers
            finally:
                stop_session(spark)
        cores = args.workers
    python_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    event_s = sum(result["stage_s"][s] for s in EVENT_STAGES)
    if args.engine == "spark":
        shutil.rmtree(data, ignore_errors=True)
    return {
        "scale": args.scale, "engine": args.engine, "cores": cores, **result,
        "driver_peak_rss_mb": round(python_mb + jvm_mb), "driver_python_peak_rss_mb": round(python_mb), "driver_jvm_peak_rss_mb": round(jvm_mb),
        "s_per_million_events": round(event_s / (result["events"] / 1e6), 2),
        "events_per_s_per_core": round(result["events"] / event_s / cores),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,30", help="comma-separated multiples of the default events")
    parser.add_argument("--engines", default="local,spark")
    parser.add_argument("--workers", type=int, default=2, help="Spark workers of one core each")
    parser.add_argument("--worker-memory", default="6g")
    parser.add_argument("--executor-memory", default="4g")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "data" / "bench" / "scale")
    parser.add_argument("--scale", type=int, help=argparse.SUPPRESS)  # internal: one run in this process
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--new-day", action="store_true", help=argparse.SUPPRESS)  # internal: the new day on a run's tables
    args = parser.parse_args(argv)
    if args.new_day:
        from rec_pipeline.engines import make_engine

        print(json.dumps(new_day(make_engine("local"), args.work_dir / f"raw_{args.scale}x", args.work_dir / f"data_{args.scale}x_local", args.work_dir / "new_day",
                                 repeats=9)))
        return 0
    if args.scale is not None:
        print(json.dumps(one_run(args)))
        return 0

    from rec_pipeline.encoders import EncoderConfig, TextEncoder
    from rec_pipeline.engines.standalone import isolated

    args.work_dir.mkdir(parents=True, exist_ok=True)
    TextEncoder(EncoderConfig(), onnx_dir=args.work_dir / "models").load()  # the checked ONNX export every run loads
    runs = []
    for scale in (int(s) for s in args.scales.split(",")):
        raw_data(args.work_dir, scale)
        for engine in args.engines.split(","):
            command = [sys.executable, "-m", "bench.scale", "--scale", str(scale), "--engine", engine, "--workers", str(args.workers),
                       "--worker-memory", args.worker_memory, "--executor-memory", args.executor_memory, "--work-dir", str(args.work_dir)]
            # Spark binds every interface: its run, cluster included, gets a network namespace of its own.
            done = (isolated(command, cwd=ROOT, capture_output=True, text=True) if engine == "spark"
                    else subprocess.run(command, cwd=ROOT, capture_output=True, text=True))
            if done.returncode != 0:
                sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
                return done.returncode
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps({"progress": runs[-1]}), file=sys.stderr, flush=True)
    # The local engine's new day: for each history, a process of its own (as the sensor's run is), started when no
    # other run is alive, so that no scale's measurement shares the machine with a larger run's leftovers.
    for run in runs:
        if run["engine"] == "local":
            done = subprocess.run([sys.executable, "-m", "bench.scale", "--new-day", "--scale", str(run["scale"]), "--work-dir", str(args.work_dir)],
                                  cwd=ROOT, capture_output=True, text=True, check=True)
            run.update(json.loads(done.stdout.strip().splitlines()[-1]))
            shutil.rmtree(args.work_dir / f"data_{run['scale']}x_local", ignore_errors=True)
    by = {(r["scale"], r["engine"]): r for r in runs}

    def ratio(a, b, key, engine):
        return round(by[a, engine][key] / by[b, engine][key], 3) if (a, engine) in by and (b, engine) in by else None

    print(json.dumps({
        "bench": "scale", "workers": args.workers, "runs": runs,
        "driver_rss_ratio_30x_over_1x": ratio(30, 1, "driver_peak_rss_mb", "spark"),
        "s_per_million_ratio_30x_over_10x": ratio(30, 10, "s_per_million_events", "spark"),
        "new_day_ratio_10x_over_1x": ratio(10, 1, "new_day_s", "local"),
        "new_day_ratio_10x_over_1x_spark": ratio(10, 1, "new_day_s", "spark"),
        "local_driver_rss_ratio_30x_over_1x": ratio(30, 1, "driver_peak_rss_mb", "local"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
