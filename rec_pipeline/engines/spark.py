"""The Spark engine: the data stages' own pandas functions on a Spark cluster, never a second copy of them.

Per raw file with `mapInPandas` (the project's readers, which keep file, row, raw JSON types and undecodable bytes:
Spark's own JSON reader turns arrays, objects, booleans and numbers into text and loses line numbers), per key with
`groupBy(key).applyInPandas` for what needs every row of a key (repeated ids, search sessions), and the parts each
task writes land in the same folders as the local engine's. The driver holds counts, never rows.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from rec_pipeline.engines import spark_settings
from rec_pipeline.engines.layout import UNPARTITIONED, RawFile, publish, staging_dir, write_part
from rec_pipeline.engines.steps import (
    INTERACTIONS,
    SESSIONS,
    USERS,
    EmbeddingCounts,
    FileOutcome,
    ValidationJob,
    ValidationReport,
    key_rows,
    read_rows,
    repeats_of,
    rule_descriptions,
    validate_files,
    vectors_schema,
)
from rec_pipeline.schema import CATALOG_COLUMNS, DataFormatError
from rec_pipeline.search.sessions import SESSION_COLUMNS, search_sessions
from rec_pipeline.splits import SplitConfig, assign_split, boundaries, cold_items, positive_interactions, split_summary, users_table
from rec_pipeline.storage import read_table

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

    def _size_shuffles(self, *inputs: Path) -> None:
        """As many shuffle partitions as the inputs' size asks for (one per 64 MB of Parquet, at least one per core):
        Spark's default of 200 made 200 tasks and 200 parts of a few hundred rows each out of the default data, and
        a stage on it took 25 s instead of 3."""
        size = sum(f.stat().st_size for path in inputs for f in Path(path).rglob("*.parquet") if f.is_file())
        cores = int(self.session.conf.get("spark.default.parallelism", "0") or 0) or _cores(self.session)
        self.session.conf.set("spark.sql.shuffle.partitions", str(max(cores, size // (64 << 20) + 1)))

    def _bucket(self, key: str):
        """A bucket of keys to group on: every row of a key lands in one bucket, and a bucket holds many keys, so the
        pandas function runs once per bucket (as many as `spark.sql.shuffle.partitions`) on whole keys, not once per
        key: a call of a per-key function costs milliseconds, and a shop has millions of sessions."""
        from pyspark.sql import functions as F

        return F.pmod(F.xxhash64(key), F.lit(int(self.session.conf.get("spark.sql.shuffle.partitions", "200")))).alias("bucket")

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
        self._size_shuffles(*[Path(f.path) for f in job.files])
        files = self._files(job.files)

        def keys_of(batches):
            for batch in batches:
                for _, row in batch.iterrows():
                    file = _file(row)
                    try:
                        yield key_rows(job, [(file, read_rows(job, file))])
                    except DataFormatError:  # the file's own task says so, below, and the driver raises it
                        continue

        parsed = files.mapInPandas(keys_of, KEY_ROWS).cache()  # counted, then joined: each file parsed once for both
        keys = parsed
        earlier = [str(job.folders.keys / d) for d in job.history if job.folders.keys is not None and (job.folders.keys / d).is_dir()]
        if earlier:
            index = spark.read.parquet(*earlier).select("key", "partition", "part", "source_file", "source_row")
            keys = keys.unionByName(index.join(keys.select("key").distinct(), "key", "left_semi"))
        repeated = keys.groupBy("key").count().filter("count > 1").select("key")
        repeats = keys.join(repeated, "key", "left_semi").groupBy(self._bucket("key")).applyInPandas(repeats_of, REPEATS)

        known_items = self._shared(read_table(job.catalog, ["item_id"])["item_id"].tolist() if job.catalog else None)
        staging = staging_dir(job.folders.valid.parent)

        def validate_group(file_rows: pd.DataFrame, repeat_rows: pd.DataFrame) -> pd.DataFrame:
            if file_rows.empty:  # repeats of a file outside the run (an earlier day's first occurrence)
                return pd.DataFrame({"partition": [], "part": [], "outcome": []})
            file = _file(file_rows.iloc[0])
            try:
                [outcome] = [asdict(o) for o in validate_files(job, [(file, read_rows(job, file))], repeat_rows, known_items(), staging)]
            except DataFormatError as err:  # an unreadable file: one clear error on the driver, not a task's traceback
                outcome = {"error": {"file": err.file, "message": err.detail, "row": err.row, "field": err.field}}
            return pd.DataFrame({"partition": [file.partition], "part": [file.part], "outcome": [json.dumps(outcome)]})

        done = files.groupBy("partition", "part").cogroup(repeats.groupBy("partition", "part")).applyInPandas(validate_group, OUTCOMES).collect()
        results = [json.loads(r["outcome"]) for r in sorted(done, key=lambda r: (r["partition"], r["part"]))]
        errors = [r["error"] for r in results if "error" in r]
        if errors:  # the first unreadable file in the logs' order, as the local engine reports it
            shutil.rmtree(staging, ignore_errors=True)
            raise DataFormatError(**errors[0])
        parsed.unpersist()
        outcomes = [FileOutcome(**r) for r in results]
        if len(outcomes) != len(job.files):
            raise RuntimeError(f"the cluster validated {len(outcomes)} of the run's {len(job.files)} files")
        publish(staging, job.folders.all(), job.partitions, job.keep)
        return ValidationReport(job, outcomes, rule_descriptions(job))

    # -- the stages after validation: the same functions as the local engine's, per partition or per key -------------

    def _events(self, path, columns):
        """The validated events with their place in the logs: the day and part from each part's path, then the row."""
        from pyspark.sql import functions as F

        frame = self.session.read.option("recursiveFileLookup", "true").parquet(str(path))
        where = F.col("_metadata.file_path")  # the part each row was read from (input_file_name() is empty after some plans)
        return (frame.select(*columns, where.alias("_path"))
                .withColumn("_day", F.regexp_extract("_path", r"/([^/]+)/part-\d+\.parquet$", 1))
                .withColumn("_part", F.regexp_extract("_path", r"part-(\d+)\.parquet$", 1).cast("long")).drop("_path"))

    def _write(self, frame, folder: Path, schema, staging: Path) -> int:
        """Each Spark partition of `frame` (in order) as one part of the table at `folder`, written by its task with
        the project's writer; the table is moved into place once every part is there. Returns the rows written."""
        staged = staging / folder.name
        columns = list(schema.names)

        def write(batches):
            from pyspark import TaskContext

            frames = [b for b in batches]
            data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
            if len(data):
                write_part(data[columns], staged / f"part-{TaskContext.get().partitionId():05d}.parquet", schema)
            yield pd.DataFrame({"rows": [len(data)]})

        rows = sum(r["rows"] for r in frame.mapInPandas(write, "rows long").collect())
        staged.mkdir(parents=True, exist_ok=True)
        return rows

    def training_splits(self, events: Path, catalog: Path, config: SplitConfig, folder: Path) -> dict:
        """rec_pipeline/splits.py's functions: positives per partition, the boundaries from counts per day and the
        one day that holds each cut, splits per partition, ordered by time and then the logs' order."""
        from pyspark.sql import functions as F

        self._size_shuffles(events)
        order = ["_day", "_part", "source_row"]
        positives = self._events(events, ["user_id", "item_id", "ts", "event_type", "source_row"]).mapInPandas(
            lambda batches: (positive_interactions(_utc_frame(b), config, keep=order) for b in batches),
            "user_id string, item_id string, ts timestamp, event_type string, _day string, _part long, source_row long",
        ).cache()
        days = positives.groupBy(F.to_date("ts").alias("day")).count().orderBy("day").toPandas()
        count = int(days["count"].sum()) if len(days) else 0
        ends = days["count"].cumsum().to_numpy() if len(days) else []

        def kth(k: int) -> pd.Timestamp:
            """The k-th earliest interaction: find its day from the counts, sort that day alone."""
            at = int((ends > k).argmax())
            day = _utc(positives.filter(F.to_date("ts") == F.lit(days["day"].iloc[at])).select("ts").orderBy("ts").toPandas()["ts"])
            return day.iloc[k - (int(ends[at - 1]) if at else 0)]

        validation_start, test_start = boundaries(count, kth, config)
        interactions = positives.mapInPandas(
            lambda batches: (assign_split(_utc_frame(b), validation_start, test_start).astype({"split": str}) for b in batches),
            "user_id string, item_id string, ts timestamp, event_type string, _day string, _part long, source_row long, split string",
        ).orderBy("ts", *order).cache()
        staging = staging_dir(folder)
        self._write(interactions.drop(*order), folder / "interactions.parquet", INTERACTIONS, staging)
        firsts = interactions.groupBy("user_id").agg(F.min("ts").alias("first_interaction")).orderBy("user_id")
        users = firsts.mapInPandas(lambda batches: (users_table(b.assign(first_interaction=_utc(b["first_interaction"])), validation_start) for b in batches),
                                   "user_id string, first_interaction timestamp, new boolean").cache()
        self._write(users, folder / "users.parquet", USERS, staging)
        per_split = interactions.groupBy("split").agg(F.count("*").alias("interactions"), F.countDistinct("user_id").alias("users")).toPandas().set_index("split")
        first_item = interactions.groupBy("item_id").agg(F.min("ts").alias("first")).toPandas().set_index("item_id")["first"]
        cold, never = cold_items(_utc(first_item), read_table(catalog, ["item_id"])["item_id"], validation_start)
        n_users, new_users = users.agg(F.count("*"), F.sum(F.col("new").cast("long"))).first()
        publish(staging, [folder / "interactions.parquet", folder / "users.parquet"], [UNPARTITIONED])
        for cached in (positives, interactions, users):
            cached.unpersist()
        return split_summary(per_split, validation_start, test_start, config.positive_events, cold, never, n_users, new_users)

    def search_sessions(self, events: Path, validation_start: pd.Timestamp, test_start: pd.Timestamp, path: Path) -> dict:
        """rec_pipeline/search/sessions.py per session (`groupBy("session_id").applyInPandas`), ordered as the local
        engine's table."""
        from pyspark.sql import functions as F

        self._size_shuffles(events)
        frame = self._events(events, SESSION_COLUMNS).drop("_day", "_part")
        sessions = frame.groupBy(self._bucket("session_id")).applyInPandas(
            lambda rows: _arrow_lists(search_sessions(_utc_frame(rows), validation_start, test_start).astype({"split": str}), {"items": pa.string(), "grades": pa.int64()}),
            "search_id string, session_id string, user_id string, ts timestamp, query string, split string, items array<string>, grades array<long>",
        ).orderBy("session_id", "ts", "search_id").cache()
        staging = staging_dir(path.parent)
        self._write(sessions, path, SESSIONS, staging)
        followed = sessions.filter(F.size("items") > 0)
        counts = dict(followed.groupBy("split").count().collect())
        summary = {"searches": sessions.count(), "searches_with_results": followed.count(),
                   **{f"{split}_searches_with_results": int(counts.get(split, 0)) for split in ("train", "validation", "test")},
                   "distinct_queries": sessions.select("query").distinct().count()}
        publish(staging, [path], [UNPARTITIONED])
        sessions.unpersist()
        return summary

    def embed(self, catalog: Path, encoder: "TextEncoder", text: "ItemTextConfig", cache: Path, path: Path) -> EmbeddingCounts:  # noqa: F821
        """rec_pipeline/embeddings.py per partition: texts and hashes; those the cache lacks (an anti-join) encoded by
        the packaged ONNX encoder in each task, which adds its vectors to the cache as a part of its own; then every
        item's vector, in the catalog's order."""
        # Imported here, not with the module: torch and transformers take 2 s to import, in every Python worker that
        # unpickles a function of this module's other stages.
        from rec_pipeline.embeddings import encode_rows, text_rows, write_vectors
        from rec_pipeline.encoders import TextEncoder

        spark = self.session
        self._size_shuffles(catalog)
        items = self._events(catalog, [*CATALOG_COLUMNS, "source_row"]).mapInPandas(
            lambda batches: (text_rows(b, text).assign(_part=b["_part"].to_numpy(), source_row=b["source_row"].to_numpy()) for b in batches),
            "item_id string, text string, text_hash string, _part long, source_row long",
        ).cache()
        known = spark.read.parquet(str(cache)).select("text_hash") if cache.exists() else None
        texts = items.select("text_hash", "text").dropDuplicates(["text_hash"])
        missing = texts.join(known, "text_hash", "left_anti") if known is not None else texts
        n_missing = missing.count()
        started = time.perf_counter()
        if n_missing:
            encoder.load()  # the export is made and checked against PyTorch once, here; tasks load the checked file
        loaded = time.perf_counter()
        if n_missing:
            config, onnx_dir, dim = encoder.config, encoder.onnx_dir, encoder.dim

            def encode(batches):
                worker = TextEncoder(replace(config, device="cpu", threads=1), onnx_dir=onnx_dir)  # a task per core
                rows = pd.concat(list(batches), ignore_index=True)
                if len(rows):
                    encoded = encode_rows(rows, worker)
                    write_vectors(cache / f"part-{uuid.uuid4().hex}.parquet", {"text_hash": encoded["text_hash"].tolist()}, np.stack(encoded["embedding"].to_numpy()))
                yield pd.DataFrame({"rows": [len(rows)]})

            cache.mkdir(parents=True, exist_ok=True)
            parts = max(1, min(n_missing // 256 + 1, spark.sparkContext.defaultParallelism if hasattr(spark, "sparkContext") else 2))
            missing.repartition(parts).mapInPandas(encode, "rows long").collect()
        done = time.perf_counter()
        vectors = spark.read.parquet(str(cache)).dropDuplicates(["text_hash"])
        table = items.join(vectors, "text_hash", "left").orderBy("_part", "source_row").select("item_id", "text_hash", "embedding")
        staging = staging_dir(path.parent)
        rows = self._write(table, path, vectors_schema(encoder.dim), staging)
        publish(staging, [path], [UNPARTITIONED])
        encoded_now = items.join(missing.select("text_hash"), "text_hash", "left_semi").count() if n_missing else 0
        items.unpersist()
        return EmbeddingCounts(rows, encoded_now, loaded - started, done - loaded)


def _cores(spark) -> int:
    """The cores the session's executors have (a local master's N, or what the cluster granted)."""
    try:
        return max(1, spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect: no SparkContext
        return 2


def _utc(values: pd.Series) -> pd.Series:
    """Spark hands timestamps to pandas in the session's time zone, without one: back to UTC."""
    values = pd.to_datetime(values)
    return values.dt.tz_localize("UTC") if getattr(values.dt, "tz", None) is None else values.dt.tz_convert("UTC")


def _utc_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(ts=_utc(frame["ts"]))


def _arrow_lists(frame: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """List columns as Arrow-backed pandas columns: pyspark converts an object column of lists through a null mask,
    which pyarrow's NumPy converter does not take for lists."""
    return frame.assign(**{name: pd.array(frame[name].tolist(), dtype=pd.ArrowDtype(pa.list_(kind))) for name, kind in columns.items()})
