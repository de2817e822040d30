"""The local engine: every data stage's functions in this process, on whole tables (the default)."""

from __future__ import annotations

import pandas as pd

from rec_pipeline.engines.layout import publish, read_table, staging_dir
from rec_pipeline.engines.steps import (
    ValidationJob,
    ValidationReport,
    history_rows,
    key_rows,
    read_rows,
    repeats_of,
    rule_descriptions,
    validate_file,
)


class LocalEngine:
    name = "local"

    def describe(self) -> str:
        return "local (pandas, this process)"

    def validate(self, job: ValidationJob) -> ValidationReport:
        """Each file read once and kept in memory; the cross-row answers over all of them and the earlier days'
        matches; then each file through the rules, its parts published with the run's other parts."""
        rows = {f: read_rows(job, f) for f in job.files}
        keys = pd.concat([key_rows(job, f, rows[f]) for f in job.files], ignore_index=True)
        repeats = repeats_of(pd.concat([history_rows(job, keys["key"]), keys], ignore_index=True))
        known_items = read_table(job.catalog, ["item_id"])["item_id"] if job.catalog else None
        staging = staging_dir(job.folders.valid.parent)
        outcomes = [validate_file(job, f, rows[f], repeats, known_items, staging) for f in job.files]
        publish(staging, job.folders.all(), job.partitions, job.keep)
        return ValidationReport(job, outcomes, rule_descriptions(job))
