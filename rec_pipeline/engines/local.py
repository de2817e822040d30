"""The local engine: every data stage's functions in this process, on whole tables (the default)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rec_pipeline.embeddings import EmbeddingCache, ItemTextConfig, embed_items
from rec_pipeline.encoders import TextEncoder
from rec_pipeline.engines.layout import publish, staging_dir, write_table
from rec_pipeline.engines.steps import (
    INTERACTIONS,
    SESSIONS,
    USERS,
    EmbeddingCounts,
    ValidationJob,
    ValidationReport,
    history_rows,
    key_rows,
    read_rows,
    repeats_of,
    rule_descriptions,
    sessions_summary,
    validate_files,
    vectors_schema,
)
from rec_pipeline.search.sessions import SESSION_COLUMNS, search_sessions
from rec_pipeline.splits import SplitConfig, make_splits
from rec_pipeline.storage import read_table


class LocalEngine:
    name = "local"

    def describe(self) -> str:
        return "local (pandas, this process)"

    def validate(self, job: ValidationJob) -> ValidationReport:
        """Each file read once and kept in memory; the cross-row answers over all of them and the earlier days'
        matches; then each file through the rules, its parts published with the run's other parts."""
        rows = {f: read_rows(job, f) for f in job.files}
        keys = key_rows(job, [(f, rows[f]) for f in job.files])
        repeats = repeats_of(pd.concat([history_rows(job, keys["key"]), keys], ignore_index=True))
        known_items = read_table(job.catalog, ["item_id"])["item_id"] if job.catalog else None
        staging = staging_dir(job.folders.valid.parent)
        outcomes = validate_files(job, [(f, rows[f]) for f in job.files], repeats, known_items, staging, keys)
        publish(staging, job.folders.all(), job.partitions, job.keep)
        return ValidationReport(job, outcomes, rule_descriptions(job))

    def training_splits(self, events: Path, catalog: Path, config: SplitConfig, folder: Path) -> dict:
        """The positive interactions split in time (rec_pipeline/splits.py), written to `folder`; the summary."""
        splits = make_splits(read_table(events, ["user_id", "item_id", "ts", "event_type"]), read_table(catalog, ["item_id"]), config)
        write_table(splits.interactions, folder / "interactions.parquet", INTERACTIONS)
        write_table(splits.users, folder / "users.parquet", USERS)
        return splits.summary()

    def search_sessions(self, events: Path, validation_start: pd.Timestamp, test_start: pd.Timestamp, path: Path) -> dict:
        """Each search with what followed it in its session (rec_pipeline/search/sessions.py), written to `path`."""
        sessions = search_sessions(read_table(events, SESSION_COLUMNS), validation_start, test_start)
        write_table(sessions, path, SESSIONS)
        return sessions_summary(sessions)

    def embed(self, catalog: Path, encoder: TextEncoder, text: ItemTextConfig, cache: Path, path: Path) -> EmbeddingCounts:
        """One vector per catalog item (rec_pipeline/embeddings.py): texts the cache lacks are encoded, and kept."""
        store = EmbeddingCache(cache, encoder.dim)
        run = embed_items(read_table(catalog), encoder, store, text)
        if run.encoded_now:
            store.save()
        write_table(pd.DataFrame({"item_id": run.item_ids, "text_hash": run.text_hashes, "embedding": list(run.vectors)}), path, vectors_schema(encoder.dim))
        return EmbeddingCounts(len(run.item_ids), run.encoded_now, run.load_seconds, run.encode_seconds)
