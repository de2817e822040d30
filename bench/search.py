"""`python -m bench.search`: POST /search latency at concurrency 1 and 8, ours beside a lexical search baseline
(bm25s behind FastAPI on uvicorn, bench/lexical_peer.py), over loopback, driven by wrk.

The requests are the test window's searches in log order (their queries as shoppers repeated them, half of them with
the searching user's id), the same bodies for every server. Three servers, each with the same uvicorn workers:
- `ours`: `rec-pipeline serve` as shipped (query vectors cached per worker; wrk's warm-up fills the cache);
- `ours_uncached`: the same with `--query-cache 0`, so every request runs the transformer on its query;
- `peer`: BM25 alone, no vectors, no personal features, no re-ranking.

Prints one JSON line: {"bench": "search", "results": {"1": {"ours": {...}, "ours_uncached": {...}, "peer": {...}}, "8": ...},
"p99_ms_at_8": ..., "ratio_p99_at_8_ours_over_peer": ...}. Run it after the README's first command.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.service import free_port, lua_script, wait_ready, wrk

CONCURRENCY = (1, 8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers for each server")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per server and concurrency")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install Debian's wrk (apt-get install wrk)")
    sessions_path = args.data_dir / "splits" / "search_sessions.parquet"
    if not sessions_path.exists():
        sys.exit(f"{sessions_path}: no search sessions: run the README's first command first")
    sessions = pd.read_parquet(sessions_path)
    test = sessions[sessions["split"] == "test"].sort_values("ts", kind="stable")
    bodies = [json.dumps({"query": q, "k": 10, **({"user_id": u} if n % 2 == 0 else {})})
              for n, (q, u) in enumerate(zip(test["query"], test["user_id"]))]
    peer_bodies = [json.dumps({"query": q, "k": 10}) for q in test["query"]]

    work = Path(tempfile.mkdtemp(prefix="bench_search_"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "REC_PIPELINE_BENCH_DATA": str(args.data_dir)}
    ports = {name: free_port() for name in ("ours", "ours_uncached", "peer")}
    serve = [sys.executable, "-m", "rec_pipeline.cli", "serve", "--workers", str(args.workers), "--data-dir", str(args.data_dir),
             "--tracking-uri", args.tracking_uri]
    commands = {
        "ours": [*serve, "--port", str(ports["ours"])],
        "ours_uncached": [*serve, "--port", str(ports["ours_uncached"]), "--query-cache", "0"],
        "peer": [sys.executable, "-m", "uvicorn", "bench.lexical_peer:app", "--port", str(ports["peer"]), "--workers", str(args.workers),
                 "--log-level", "warning", "--no-access-log"],
    }
    ready = {"ours": "/readyz", "ours_uncached": "/readyz", "peer": "/ping"}
    scripts = {"ours": lua_script(work / "ours.lua", bodies), "ours_uncached": lua_script(work / "uncached.lua", bodies),
               "peer": lua_script(work / "peer.lua", peer_bodies)}
    servers, results = {}, {}
    try:
        for name, command in commands.items():
            # One server at a time, so that none competes with another for the cores.
            log = work / f"{name}.log"
            servers[name] = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
            wait_ready(f"http://127.0.0.1:{ports[name]}{ready[name]}", servers[name], log)
            url = f"http://127.0.0.1:{ports[name]}/search"
            wrk(url, scripts[name], 8, max(4, len(bodies) // 300))  # warm-up: ours goes once through the queries
            for connections in CONCURRENCY:
                results.setdefault(str(connections), {})[name] = wrk(url, scripts[name], connections, args.seconds)
            os.killpg(servers[name].pid, signal.SIGTERM)
            servers[name].wait(30)
    finally:
        for process in servers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    at8 = results["8"]
    print(json.dumps({
        "bench": "search", "searches": len(bodies), "distinct_queries": int(test["query"].nunique()), "workers": args.workers,
        "cores": os.cpu_count(), "seconds": args.seconds, "results": results,
        "p99_ms_at_8": at8["ours"]["p99_ms"], "p99_ms_at_8_uncached": at8["ours_uncached"]["p99_ms"],
        "ratio_p99_at_8_ours_over_peer": round(at8["ours"]["p99_ms"] / at8["peer"]["p99_ms"], 2),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
