"""The Spark engine: the data stages' own pandas functions on a Spark cluster, never a second copy of them.

Per raw file with `mapInPandas` (the project's readers, which keep file, row, raw JSON types and undecodable bytes:
Spark's own JSON reader turns arrays, objects, booleans and numbers into text and loses line numbers), per key with
`groupBy(key).applyInPandas` for what needs every row of a key (repeated ids, search sessions), and the parts each
task writes land in the same folders as the local engine's. The driver holds counts, never rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pandas as pd

from rec_pipeline.engines import spark_settings
from rec_pipeline.engines.layout import RawFile, publish, staging_dir
from rec_pipeline.engines.steps import (
    FileOutcome,
    ValidationJob,
    ValidationReport,
    key_rows,
    read_rows,
    repeats_of,
    rule_descriptions,
    validate_file,
)

KEY_ROWS = "key string, partition string, part long, source_file string, source_row long"
REPEATS = "partition string, part long, source_row long, first_file string, first_row long"
OUTCOMES = "partition string, part long, outcome string"


def _file(row) -> RawFile:
    return RawFile(str(row["path"]), str(row["name"]), str(row["partition"]), int(row["part"]))


class SparkEngine:
    name = "spark"

    def __init__(self, spark=None):
        self._spark = spark

    @property
    def session(self):
        """The SparkSession, started on first use (from dagster-pyspark's lazy resource where the engine has one)."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            builder = SparkSession.builder
            for key, value in spark_settings().items():
                builder = builder.config(key, value)
            self._spark = builder.getOrCreate()
        return getattr(self._spark, "spark_session", self._spark)

    def describe(self) -> str:
        conf = self.session.conf
        return f"spark ({conf.get('spark.remote', None) or conf.get('spark.master', '?')})"

    def _files(self, files) -> "pyspark.sql.DataFrame":  # noqa: F821
        frame = pd.DataFrame([{"path": f.path, "name": f.name, "partition": f.partition, "part": f.part} for f in files])
        # One task per raw file: a file is what a task reads, parses and writes the parts of.
        return self.session.createDataFrame(frame, "path string, name string, partition string, part long").repartition(max(1, len(files)), "partition", "part")

    def _shared(self, value):
        """`value` as every task will see it: a broadcast variable on a classic session, in the closure on Spark Connect
        (which has no SparkContext)."""
        try:
            broadcast = self.session.sparkContext.broadcast(value)
            return lambda: broadcast.value
        except Exception:  # pyspark.errors.PySparkNotImplementedError: Spark Connect
            return lambda: value

    def validate(self, job: ValidationJob) -> ValidationReport:
        """Files read by tasks, keys grouped by key for the repeats (with the earlier days' key index), then each file
        through the rules in a task of its own, its parts written there; the driver collects one line of counts per
        file and publishes the parts."""
        spark = self.session
        files = self._files(job.files)

        def keys_of(batches):
            for batch in batches:
                for _, row in batch.iterrows():
                    file = _file(row)
                    yield key_rows(job, file, read_rows(job, file))

        keys = files.mapInPandas(keys_of, KEY_ROWS)
        earlier = [str(job.folders.keys / d) for d in job.history if job.folders.keys is not None and (job.folders.keys / d).is_dir()]
        if earlier:
            index = spark.read.parquet(*earlier).select("key", "partition", "part", "source_file", "source_row")
            keys = keys.unionByName(index.join(keys.select("key").distinct(), "key", "left_semi"))
        repeated = keys.groupBy("key").count().filter("count > 1").select("key")
        repeats = keys.join(repeated, "key", "left_semi").groupBy("key").applyInPandas(repeats_of, REPEATS)

        from rec_pipeline.engines.layout import read_table

        known_items = self._shared(read_table(job.catalog, ["item_id"])["item_id"].tolist() if job.catalog else None)
        staging = staging_dir(job.folders.valid.parent)

        def validate_group(file_rows: pd.DataFrame, repeat_rows: pd.DataFrame) -> pd.DataFrame:
            if file_rows.empty:  # repeats of a file outside the run (an earlier day's first occurrence)
                return pd.DataFrame({"partition": [], "part": [], "outcome": []})
            file = _file(file_rows.iloc[0])
            outcome = validate_file(job, file, read_rows(job, file), repeat_rows, known_items(), staging)
            return pd.DataFrame({"partition": [file.partition], "part": [file.part], "outcome": [json.dumps(asdict(outcome))]})

        done = files.groupBy("partition", "part").cogroup(repeats.groupBy("partition", "part")).applyInPandas(validate_group, OUTCOMES).collect()
        outcomes = [FileOutcome(**json.loads(r["outcome"])) for r in sorted(done, key=lambda r: (r["partition"], r["part"]))]
        if len(outcomes) != len(job.files):
            raise RuntimeError(f"the cluster validated {len(outcomes)} of the run's {len(job.files)} files")
        publish(staging, job.folders.all(), job.partitions, job.keep)
        return ValidationReport(job, outcomes, rule_descriptions(job))
