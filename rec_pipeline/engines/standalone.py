"""A Spark standalone cluster on this machine (a master and its workers, each a process of its own), and a network
namespace to run it in: what the tests and `python -m bench.scale` run the spark engine on, and a way to try the
engine against a real cluster without one.

pip's pyspark ships `spark-class` but not Spark's start scripts, so the master and workers are started as
`spark-class org.apache.spark.deploy.master.Master` and `...deploy.worker.Worker`. Spark binds every interface; a
test or benchmark runs inside a network namespace of its own (`isolated`), where only its own loopback exists, and
the namespace's first process is its init: when it ends, every process started in it ends with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def java_missing() -> str | None:
    """Why Spark cannot start here, or None."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no java on PATH (Spark needs Java 17: Debian's openjdk-17-jre-headless; `make test` installs it as root)"
    return None


def isolation_missing() -> str | None:
    """Why `isolated` cannot run here, or None."""
    if shutil.which("unshare") is None:
        return "no unshare (util-linux) to give Spark a network namespace of its own"
    if shutil.which("ip") is None:
        return "no ip (iproute2) to bring up the network namespace's loopback"
    probe = subprocess.run(_unshare_prefix() + ["true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace here: {probe.stderr.strip() or probe.returncode}"
    return None


def _unshare_prefix() -> list[str]:
    # A new network namespace (only a loopback), a new PID namespace whose init is the command (its end ends every
    # process in it), and /proc mounted for it. Without root, a user namespace maps this user to root inside.
    prefix = ["unshare", "--net", "--pid", "--fork", "--mount-proc"]
    return prefix if os.geteuid() == 0 else prefix[:1] + ["--map-root-user"] + prefix[1:]


def isolated(argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
    """Run `argv` in a network namespace of its own with its loopback up; every process it starts ends with it."""
    command = ["sh", "-c", 'ip link set lo up && exec "$@"', "isolated", *argv]
    return subprocess.run(_unshare_prefix() + command, **kwargs)


class StandaloneCluster:
    """`with StandaloneCluster(workers=2) as cluster:` a master on 127.0.0.1 and `workers` workers registered with it;
    `cluster.url` is its spark:// address. On exit every process is stopped (SIGTERM, then SIGKILL)."""

    def __init__(self, workers: int = 2, cores: int = 1, memory: str = "2g", port: int = 7077, log_dir: str | Path | None = None,
                 start_timeout_s: float = 120.0):
        self.workers, self.cores, self.memory, self.port = workers, cores, memory, port
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="spark-standalone-"))
        self.start_timeout_s = start_timeout_s
        self.processes: list[subprocess.Popen] = []
        self.url = f"spark://127.0.0.1:{port}"
        self.started_in_s: float | None = None

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable),
               "SPARK_WORKER_DIR": str(self.log_dir / "work"), "SPARK_LOG_DIR": str(self.log_dir)}
        log = (self.log_dir / f"{name}.log").open("w")
        process = subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(process)
        return process

    def __enter__(self) -> StandaloneCluster:
        started = time.perf_counter()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(self.port), "--webui-port", "0"])
            for n in range(self.workers):
                self._start(f"worker-{n}", ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", str(self.cores),
                                            "--memory", self.memory, "--webui-port", "0", "--work-dir", str(self.log_dir / "work"), self.url])
            self._wait_for_workers(started)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.perf_counter() - started
        return self

    def _wait_for_workers(self, started: float) -> None:
        master_log = self.log_dir / "master.log"
        while time.perf_counter() - started < self.start_timeout_s:
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"a Spark process exited with {dead[0].returncode}; logs in {self.log_dir}")
            if master_log.exists() and master_log.read_text(errors="replace").count("Registering worker") >= self.workers:
                return
            time.sleep(0.5)
        raise TimeoutError(f"{self.workers} Spark worker(s) did not register within {self.start_timeout_s:.0f} s; logs in {self.log_dir}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def __exit__(self, *exc) -> None:
        self.stop()

    def connect_server(self, port: int = 15002, timeout_s: float = 120.0) -> subprocess.Popen:
        """A Spark Connect server (a driver of this cluster, started with spark-submit) on 127.0.0.1:`port`, stopped
        with the cluster; a client reaches it with `spark.remote` sc://127.0.0.1:`port`."""
        import socket

        started = time.monotonic()
        conf = {**self.conf(), "spark.connect.grpc.binding.port": str(port), "spark.sql.session.timeZone": "UTC"}
        args = ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "--master", self.url,
                *[item for key, value in conf.items() if key != "spark.master" for item in ("--conf", f"{key}={value}")]]
        env = {**os.environ, "SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}
        log = (self.log_dir / "connect.log").open("w")
        server = subprocess.Popen([str(spark_home() / "bin" / "spark-submit"), *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append(server)
        while time.monotonic() - started < timeout_s:
            if server.poll() is not None:
                raise RuntimeError(f"the Spark Connect server exited with {server.returncode}; log in {self.log_dir / 'connect.log'}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return server
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"the Spark Connect server did not listen on {port} within {timeout_s:.0f} s")

    def conf(self, **extra: str) -> dict[str, str]:
        """The spark engine's settings for this cluster: its master, an executor per worker with its cores."""
        return {"spark.master": self.url, "spark.executor.cores": str(self.cores), "spark.executor.memory": "1g",
                "spark.cores.max": str(self.cores * self.workers), "spark.ui.enabled": "false", **extra}


def stop_session(spark) -> None:
    """Stop `spark` and the driver's own JVM with it (pyspark leaves the JVM running until Python exits), so that a
    test or a benchmark ends every process it started; a later session starts a fresh JVM."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    spark.stop()
    if gateway is not None:
        process = getattr(gateway, "proc", None)
        gateway.shutdown()
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None


def driver_jvm_peak_mb() -> float:
    """The peak resident memory (VmHWM) of this process's Spark driver JVM so far, in MB; 0 without one."""
    from pyspark import SparkContext

    process = getattr(SparkContext._gateway, "proc", None) if SparkContext._gateway is not None else None
    if process is None:
        return 0.0
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


def start_session(conf: dict[str, str]):
    """A SparkSession with the spark engine's settings (rec_pipeline.engines.spark_settings) and `conf`."""
    from pyspark.sql import SparkSession

    from rec_pipeline.engines import spark_settings

    builder = SparkSession.builder
    for key, value in spark_settings(conf).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
