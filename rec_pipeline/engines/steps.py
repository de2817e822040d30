"""The validation stage as the pandas functions both engines run: per raw file (read it, the keys the cross-row rules
need, the row rules with their cross-row inputs, the parts it writes) and per key (`first_occurrences`).

    read_rows(file) ──> key_rows ──┐
                                   ├─> first_occurrences (every row of a key) ──> repeats of each file
    history_rows (earlier days) ───┘
    read_rows(files) + their repeats ──> validate_files: the rules in order, first failed rule wins; parts per file

The local engine calls these on whole tables in one process; the Spark engine calls the very same functions in
`mapInPandas` (per file) and `groupBy(key).applyInPandas` (per key). The rules themselves live in
rec_pipeline/validation.py, the readers in rec_pipeline/sources/.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from rec_pipeline.engines.layout import RawFile, TableFolders, arrow_table, key_hash, part_path, write_arrow, write_hashes
from rec_pipeline.privacy import desensitise_queries, pseudonymise
from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS
from rec_pipeline.sources.canonical import read_file, source_table
from rec_pipeline.sources.formats import source_rules
from rec_pipeline.sources.online_retail import load_online_retail
from rec_pipeline.sources.table import SourceTable
from rec_pipeline.storage import read_table
from rec_pipeline.schema import REQUIRED_CATALOG_COLUMNS, REQUIRED_EVENT_COLUMNS
from rec_pipeline.validation import (
    FIRST_SEEN,
    ValidationSettings,
    apply_rules,
    as_text,
    catalog_rules,
    coerce_catalog,
    coerce_events,
    event_rules,
    first_occurrences,
    first_seen_at,
)

KEYS = {"events": "event_id", "catalog": "item_id"}
ORDER = ["partition", "part", "source_row"]  # the logs' order (rec_pipeline/engines/layout.py)

_TS = pa.timestamp("us", tz="UTC")
_PROVENANCE = [pa.field("source_file", pa.string()), pa.field("source_row", pa.int64())]
SCHEMAS = {
    ("events", "valid"): pa.schema([
        *[pa.field(c, pa.string()) for c in ("event_id",)], pa.field("ts", _TS),
        *[pa.field(c, pa.string()) for c in ("user_id", "session_id", "event_type", "item_id", "query")],
        pa.field("price", pa.float64()), pa.field("quantity", pa.int64()), *_PROVENANCE,
    ]),
    ("catalog", "valid"): pa.schema([
        *[pa.field(c, pa.string()) for c in ("item_id", "title", "description", "category", "brand")],
        pa.field("price", pa.float64()), pa.field("first_seen", _TS), *_PROVENANCE,
    ]),
    ("events", "quarantine"): pa.schema([*[pa.field(c, pa.string()) for c in EVENT_COLUMNS], *_PROVENANCE,
                                         *[pa.field(c, pa.string()) for c in ("rule", "reason", "failed_rules")]]),
    ("catalog", "quarantine"): pa.schema([*[pa.field(c, pa.string()) for c in CATALOG_COLUMNS], *_PROVENANCE,
                                          *[pa.field(c, pa.string()) for c in ("rule", "reason", "failed_rules")]]),
}
KEY_SCHEMA = pa.schema([pa.field("key", pa.string()), pa.field("key_hash", pa.int64()), pa.field("partition", pa.string()),
                        pa.field("part", pa.int64()), *_PROVENANCE])


@dataclass(frozen=True)
class ValidationJob:
    """One run of a table's validation: which files, under which policy, into which folders. Everything a worker
    needs travels in it (it is small): the Spark engine ships it to every task."""

    table: str  # "events" or "catalog"
    format: str  # rec_pipeline.schema.FORMATS
    files: tuple[RawFile, ...]
    settings: ValidationSettings
    folders: TableFolders
    salt: str | None = None  # events: user ids are pseudonymised with it before anything is written
    cache_dir: str | None = None  # where the Online Retail parse is kept between readers
    history: tuple[str, ...] = ()  # partitions outside this run and before its last one: their key index is searched
    keep: tuple[str, ...] | None = None  # every partition the raw folder holds now; the others' parts are removed
    catalog: str | None = None  # events: the validated catalog folder, whose item ids the unknown_item rule knows

    @property
    def key(self) -> str:
        return KEYS[self.table]

    @property
    def partitions(self) -> list[str]:
        return sorted({f.partition for f in self.files})


@dataclass
class FileOutcome:
    """What validating one raw file came to: the counts its metadata shows (the rows themselves are in its parts)."""

    partition: str
    rows_in: int
    rows_valid: int
    quarantined_by_rule: dict[str, int]
    failures_by_rule: dict[str, int]
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def rows_quarantined(self) -> int:
        return self.rows_in - self.rows_valid


def read_rows(job: ValidationJob, file: RawFile) -> SourceTable:
    """The file's rows as read (values untouched), with provenance and the source's own rules."""
    if job.format == "online_retail":
        events, catalog = load_online_retail(file.path, job.cache_dir)
        return events if job.table == "events" else catalog
    columns, required = (EVENT_COLUMNS, REQUIRED_EVENT_COLUMNS) if job.table == "events" else (CATALOG_COLUMNS, REQUIRED_CATALOG_COLUMNS)
    return source_table([read_file(Path(file.path), file.name, columns, required)], [file.name])


def key_rows(job: ValidationJob, batch: list[tuple[RawFile, SourceTable]]) -> pd.DataFrame:
    """Every row's key as the rules read it (stripped text), with its place in the logs: what the cross-row rules
    group on. Rows without a key are left out."""
    frame = pd.concat([rows.frame[[c for c in (job.key, "source_file", "source_row") if c in rows.frame.columns]] for _, rows in batch], ignore_index=True)
    keys = as_text(frame[job.key]) if job.key in frame.columns else pd.Series(None, index=frame.index, dtype=object)
    place = {file.name: (file.partition, file.part) for file, _ in batch}
    where = frame["source_file"].map(place)
    out = pd.DataFrame({"key": keys.to_numpy(dtype=object), "partition": [w[0] for w in where], "part": np.array([w[1] for w in where], dtype="int64"),
                        "source_file": frame["source_file"].to_numpy(dtype=object), "source_row": frame["source_row"].to_numpy(dtype="int64")})
    return out[out["key"].notna()].reset_index(drop=True)


def repeats_of(keys: pd.DataFrame) -> pd.DataFrame:
    """`first_occurrences` over key rows (the run's and the earlier days' matches): the rows that repeat a key."""
    return first_occurrences(keys, "key", ORDER)


def history_rows(job: ValidationJob, keys: pd.Series) -> pd.DataFrame:
    """Where each of `keys` first occurs in the partitions of `job.history`, searched through their key index by hash:
    each earlier file's sorted hashes are memory-mapped and the new keys' hashes binary-searched in them, so a new day
    touches a few pages of each earlier day, not its rows; the rows of a day are read only where a hash matched."""
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in (("key", object), ("partition", object), ("part", "int64"), ("source_file", object), ("source_row", "int64"))})
    if not job.history or job.folders.hashes is None or keys.empty:
        return empty
    wanted = np.sort(pd.unique(key_hash(pd.Series(pd.unique(keys)))))
    days = []
    for day in job.history:
        for part in sorted((job.folders.hashes / day).glob("part-*.npy")):
            hashes = np.load(part, mmap_mode="r", allow_pickle=False)
            if len(hashes) and (hashes[np.searchsorted(hashes, wanted).clip(max=len(hashes) - 1)] == wanted).any():
                days.append(day)
                break
    if not days:
        return empty
    found = read_table([job.folders.keys / day for day in days])
    found = found[found["key_hash"].isin(wanted) & found["key"].isin(set(keys))]
    return pd.concat([empty, found.drop(columns=["key_hash"]).astype({"part": "int64", "source_row": "int64"})], ignore_index=True)


def validate_files(job: ValidationJob, batch: list[tuple[RawFile, SourceTable]], repeats: pd.DataFrame, known_items: Iterable[str] | None,
                   staging: Path, keys: pd.DataFrame | None = None) -> list[FileOutcome]:
    """Files' rows through every rule at once (the rules work row by row; the cross-row answers come in `repeats`:
    the rows that repeat a key first seen earlier), then each file's parts written under `staging`: valid rows (typed;
    user ids pseudonymised, queries desensitised), quarantined rows with rule and reason, and for the events its key
    index. The local engine passes every file of a run (one pass of the rules: 60 passes of one file each cost 6 s
    more on the default data), a Spark task the file it read. `keys`: the batch's `key_rows`, where the caller has
    them already."""
    files = [file for file, _ in batch]
    raw = pd.concat([rows.frame for _, rows in batch], ignore_index=True) if len(batch) > 1 else batch[0][1].frame.copy()
    names = pd.DataFrame({"partition": [f.partition for f in files], "part": [f.part for f in files], "source_file": [f.name for f in files]})
    mine = repeats.merge(names, on=["partition", "part"])  # the repeats among these files' rows
    mine = mine.assign(at=first_seen_at(mine).to_numpy(dtype=object))[["source_file", "source_row", "at"]]
    placed = raw[["source_file", "source_row"]].reset_index().merge(mine, on=["source_file", "source_row"])
    raw[FIRST_SEEN] = pd.Series(placed["at"].to_numpy(dtype=object), index=placed["index"].to_numpy()).reindex(raw.index)
    source_rules = batch[0][1].rules
    if job.table == "events":
        result = apply_rules(raw, coerce_events(raw), [*source_rules, *event_rules(job.settings, known_items if known_items is not None else [])], EVENT_COLUMNS)
        # Raw user ids stop here: neither the valid nor the quarantined table, nor any metadata, carries them.
        for table in (result.valid, result.quarantine):
            table["user_id"] = pseudonymise(table["user_id"], job.salt)
            table["query"] = desensitise_queries(table["query"])
    else:
        result = apply_rules(raw, coerce_catalog(raw), [*source_rules, *catalog_rules(job.settings)], CATALOG_COLUMNS)
    # Each table converted to Arrow once, its rows in file order, and sliced per file: a conversion per file cost
    # 1 s more on the default data's 60 files.
    position = {file.name: n for n, file in enumerate(files)}
    rows_in = np.bincount(raw["source_file"].map(position).to_numpy(dtype="int64"), minlength=len(files))
    valid, valid_rows = _per_file(result.valid, position, SCHEMAS[(job.table, "valid")])
    quarantine, _ = _per_file(result.quarantine, position, SCHEMAS[(job.table, "quarantine")])
    writes = [*((part, part_path(staging / job.folders.valid.name, file)) for part, file in zip(valid, files)),
              *((part, part_path(staging / job.folders.quarantine.name, file)) for part, file in zip(quarantine, files))]
    if job.folders.keys is not None:
        keys = key_rows(job, batch) if keys is None else keys
        keys = keys.drop_duplicates(["partition", "part", "key"], keep="first")
        keys = keys.assign(key_hash=key_hash(keys["key"]))
        key_parts, _ = _per_file(keys, position, KEY_SCHEMA)
        writes += [(part, part_path(staging / job.folders.keys.name, file)) for part, file in zip(key_parts, files)]
        for part, file in zip(key_parts, files):
            write_hashes(part.column("key_hash").to_numpy(), part_path(staging / job.folders.hashes.name, file).with_suffix(".npy"))
    by_rule = result.quarantine.groupby(["source_file", "rule"]).size()
    failed = result.quarantine[["source_file"]].assign(rule=result.quarantine["failed_rules"].astype(object).str.split(";")).explode("rule").groupby(["source_file", "rule"]).size()
    outcomes = [
        FileOutcome(
            file.partition, int(rows_in[n]), int(valid_rows[n]),
            {name: int(by_rule.get((file.name, name), 0)) for name in result.quarantined_by_rule},
            {name: int(failed.get((file.name, name), 0)) for name in result.failures_by_rule}, dict(rows.stats),
        )
        for n, (file, rows) in enumerate(batch)
    ]
    # Parquet encoding and the file system let go of the GIL, so threads overlap the writes.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda w: write_arrow(*w), writes))
    return outcomes


def _per_file(frame: pd.DataFrame, position: dict[str, int], schema: pa.Schema) -> tuple[list[pa.Table], np.ndarray]:
    """`frame` (rows of several files, `source_file` naming each row's) in Arrow, one slice per file in `position`
    order, and the rows of each."""
    where = frame["source_file"].map(position).to_numpy(dtype="int64")
    order = np.argsort(where, kind="stable")
    table = arrow_table(frame.iloc[order], schema)
    counts = np.bincount(where, minlength=len(position))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return [table.slice(int(start), int(count)) for start, count in zip(starts, counts)], counts


def rule_descriptions(job: ValidationJob) -> dict[str, str]:
    """Every rule of the job's table in the order they are applied, the source's own first."""
    rules = event_rules(job.settings, []) if job.table == "events" else catalog_rules(job.settings)
    return {rule.name: rule.description for rule in [*source_rules(job.format, job.table), *rules]}


@dataclass
class ValidationReport:
    """A run's outcomes, file by file, summed per partition and over the run."""

    job: ValidationJob
    outcomes: list[FileOutcome]
    rule_descriptions: dict[str, str]

    def totals(self, partition: str | None = None) -> FileOutcome:
        chosen = [o for o in self.outcomes if partition is None or o.partition == partition]
        by_rule, failures, stats = Counter(), Counter(), Counter()
        for o in chosen:
            by_rule.update(o.quarantined_by_rule)
            failures.update(o.failures_by_rule)
            stats.update(o.stats)
        names = list(self.rule_descriptions)
        return FileOutcome(
            partition if partition is not None else "",
            sum(o.rows_in for o in chosen), sum(o.rows_valid for o in chosen),
            {n: int(by_rule.get(n, 0)) for n in names}, {n: int(failures.get(n, 0)) for n in names}, dict(stats),
        )



# The other stages' tables, as both engines write them (their functions: rec_pipeline/splits.py,
# rec_pipeline/search/sessions.py, rec_pipeline/embeddings.py).
_TS_NS = pa.timestamp("ns", tz="UTC")
INTERACTIONS = pa.schema([pa.field("user_id", pa.string()), pa.field("item_id", pa.string()), pa.field("ts", _TS_NS),
                          pa.field("event_type", pa.string()), pa.field("split", pa.dictionary(pa.int8(), pa.string()))])
USERS = pa.schema([pa.field("user_id", pa.string()), pa.field("first_interaction", _TS_NS), pa.field("new", pa.bool_())])
SESSIONS = pa.schema([*[pa.field(c, pa.string()) for c in ("search_id", "session_id", "user_id")], pa.field("ts", _TS_NS),
                      pa.field("query", pa.string()), pa.field("split", pa.string()),
                      pa.field("items", pa.list_(pa.string())), pa.field("grades", pa.list_(pa.int64()))])


def vectors_schema(dim: int) -> pa.Schema:
    return pa.schema([pa.field("item_id", pa.string()), pa.field("text_hash", pa.string()), pa.field("embedding", pa.list_(pa.float32(), dim))])


def sessions_summary(sessions: pd.DataFrame) -> dict:
    """The search sessions' counts: searches, those something followed, per split, distinct queries."""
    followed = sessions[sessions["items"].map(len) > 0]
    counts = followed["split"].value_counts()
    return {"searches": len(sessions), "searches_with_results": len(followed),
            **{f"{split}_searches_with_results": int(counts.get(split, 0)) for split in ("train", "validation", "test")},
            "distinct_queries": int(sessions["query"].nunique())}


@dataclass
class EmbeddingCounts:
    """What embedding the catalog came to (the vectors are in the stage's table)."""

    items: int
    encoded_now: int  # items whose text had no cached vector
    load_seconds: float  # loading the model, only when something had to be encoded
    encode_seconds: float

    @property
    def reused(self) -> int:
        return self.items - self.encoded_now

    @property
    def items_per_s(self) -> float | None:
        return self.encoded_now / self.encode_seconds if self.encoded_now and self.encode_seconds > 0 else None
