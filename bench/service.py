"""`python -m bench.service`: our service against `mlflow models serve` on the same registered version, over loopback,
driven by wrk at concurrency 1, 8 and 64.

Same content for both: ours gets a user id and looks up that user's history itself (SQLite store, as served); the
peer gets that history and 1,000 candidates as tensors (the registered ONNX model's signature). Each request cycles
through the same 50 users for both. Both servers run with the same number of uvicorn workers. Prints one JSON line:

    {"bench": "service", "results": {"8": {"ours": {"requests_per_s", "p50_ms", "p99_ms", "errors"}, "peer": {...}}, ...},
     "ratio_at_8": ours requests/s over the peer's, ...}

Run it after the README's first command (it needs the registry and the splits): `.venv/bin/python -m bench.service`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from rec_pipeline.ranker.model import season_features
from rec_pipeline.registry import REGISTERED_MODEL, champion_version, client_for, download_version, newest_version

CONCURRENCY = (1, 8, 64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{url}: the server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{url} did not answer within {timeout:.0f} s")


def lua_script(path: Path, bodies: list[str]) -> Path:
    """A wrk script posting `bodies` in turn."""
    quoted = ",\n".join("[==[" + b + "]==]" for b in bodies)
    path.write_text(
        f"bodies = {{\n{quoted}\n}}\ncounter = 0\n"
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        "request = function()\n  counter = counter % #bodies + 1\n  return wrk.format(nil, nil, nil, bodies[counter])\nend\n"
    )
    return path


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    latency = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {"requests_per_s": round(rps, 1), "p50_ms": round(latency["50"], 3), "p99_ms": round(latency["99"], 3),
            "errors": int(errors.group(1)) if errors else 0, **({"socket_errors": socket_errors.group(1)} if socket_errors else {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers for each server")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per server and concurrency")
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: install Debian's wrk (apt-get install wrk)")
    interactions = args.data_dir / "splits" / "interactions.parquet"
    if not interactions.exists():
        sys.exit(f"{interactions}: no training splits: run the README's first command first")

    client = client_for(args.tracking_uri)
    version = champion_version(client) or newest_version(client)
    extra, item_ids = download_version(args.tracking_uri, REGISTERED_MODEL, version)
    history_length = json.loads((extra / "serving.json").read_text())["history"]
    rows = {item: r + 1 for r, item in enumerate(item_ids)}

    # The same users for both, drawn at random (their ids are pseudonyms, which the service takes as they are), and
    # for the peer each one's history as model rows, as the service looks it up.
    frame = pd.read_parquet(interactions, columns=["user_id", "item_id", "ts"]).sort_values("ts", kind="stable")
    frame = frame.drop_duplicates(["user_id", "item_id"])
    rng = np.random.default_rng(0)
    everyone = np.array(sorted(frame["user_id"].unique()), dtype=object)
    users = rng.choice(everyone, size=min(args.users, len(everyone)), replace=False).tolist()
    season = season_features(pd.to_datetime([pd.Timestamp.now(tz="UTC").normalize()])).tolist()
    ours, peer, lengths = [], [], []
    for user in users:
        history = [rows[i] for i in frame.loc[frame["user_id"] == user, "item_id"] if i in rows][-history_length:]
        lengths.append(len(history))
        candidates = rng.choice(np.arange(1, len(item_ids) + 1), size=min(1000, len(item_ids)), replace=False).tolist()
        ours.append(json.dumps({"user_id": user, "k": 10}))
        peer.append(json.dumps({"inputs": {"history": [history], "candidates": candidates, "season": season}}))

    work = Path(tempfile.mkdtemp(prefix="bench_service_"))
    servers = {}
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "MLFLOW_TRACKING_URI": args.tracking_uri}
    ports = {"ours": free_port(), "peer": free_port()}
    commands = {
        "ours": [sys.executable, "-m", "rec_pipeline.cli", "serve", "--port", str(ports["ours"]), "--workers", str(args.workers),
                 "--data-dir", str(args.data_dir), "--tracking-uri", args.tracking_uri],
        "peer": [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{REGISTERED_MODEL}/{version}",
                 "--env-manager", "local", "-p", str(ports["peer"]), "-w", str(args.workers)],
    }
    ready = {"ours": f"http://127.0.0.1:{ports['ours']}/readyz", "peer": f"http://127.0.0.1:{ports['peer']}/ping"}
    urls = {"ours": f"http://127.0.0.1:{ports['ours']}/recommend", "peer": f"http://127.0.0.1:{ports['peer']}/invocations"}
    scripts = {"ours": lua_script(work / "ours.lua", ours), "peer": lua_script(work / "peer.lua", peer)}
    try:
        for name, command in commands.items():
            log = work / f"{name}.log"
            servers[name] = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
            wait_ready(ready[name], servers[name], log)
        for name in servers:
            wrk(urls[name], scripts[name], 8, 2)  # warm-up
        results = {}
        for connections in CONCURRENCY:
            results[str(connections)] = {name: wrk(urls[name], scripts[name], connections, args.seconds) for name in ("ours", "peer")}
    finally:
        for process in servers.values():
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    ratios = {f"ratio_at_{c}": round(results[str(c)]["ours"]["requests_per_s"] / results[str(c)]["peer"]["requests_per_s"], 2) for c in CONCURRENCY}
    print(json.dumps({
        "bench": "service", "model": f"models:/{REGISTERED_MODEL}/{version}", "items": len(item_ids), "workers": args.workers,
        "cores": os.cpu_count(), "seconds": args.seconds, "users": len(users), "mean_history": round(float(np.mean(lengths)), 1), "peer_candidates": min(1000, len(item_ids)),
        "results": results, **ratios,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
