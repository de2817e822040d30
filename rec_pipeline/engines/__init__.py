"""The engines that run the data stages, and the one place where the two meet.

Every data stage (validation, the training splits, the search sessions, the item embeddings) is written once, as
pandas functions that take and return frames: rec_pipeline/engines/steps.py for validation, and the stage modules
(rec_pipeline/splits.py, rec_pipeline/search/sessions.py, rec_pipeline/embeddings.py) for the others. An engine
decides where those functions run:

- `local` (rec_pipeline/engines/local.py, the default): in this process, on whole tables. Fast for data that fits
  one machine, and what a laptop runs.
- `spark` (rec_pipeline/engines/spark.py): on a Spark cluster (local[N], standalone, YARN, Kubernetes, or Spark
  Connect), per raw file with `mapInPandas` and per key with `groupBy(...).applyInPandas`; the driver holds counts,
  never rows.

Both write the same folders in the same layout (rec_pipeline/engines/layout.py), so what comes after reads one
format whichever engine ran; tests/test_engines.py holds the two to the same answers.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, Mapping

ENGINES = ("local", "spark")
EngineName = Literal["local", "spark"]


def spark_settings(conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """`conf` with what the spark engine needs unless it says otherwise: local[*] when it names no cluster. Also, as
    the session is about to start: its Python workers run this interpreter, where the project is installed, unless
    PYSPARK_PYTHON names another (a cluster whose image installs the project at another path)."""
    settings = dict(conf or {})
    if "spark.master" not in settings and "spark.remote" not in settings:
        settings["spark.master"] = "local[*]"
    settings.setdefault("spark.app.name", "rec_pipeline")
    # Timestamps reach the pandas functions in the session's time zone and without one: UTC, as the library has them.
    settings.setdefault("spark.sql.session.timeZone", "UTC")
    settings.setdefault("spark.ui.showConsoleProgress", "false")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return settings


def spark_target(conf: Mapping[str, str] | None = None) -> str:
    settings = spark_settings(conf)
    return settings.get("spark.remote") or settings["spark.master"]


def make_engine(name: str = "local", spark=None):
    """The engine called `name`. `spark`: a SparkSession, or anything whose `spark_session` gives one on first use
    (dagster-pyspark's LazyPySparkResource), so that building the engine starts no JVM."""
    if name == "local":
        from rec_pipeline.engines.local import LocalEngine

        return LocalEngine()
    if name == "spark":
        from rec_pipeline.engines.spark import SparkEngine

        return SparkEngine(spark)
    raise ValueError(f"unknown engine {name!r}; expected one of {', '.join(ENGINES)}")
