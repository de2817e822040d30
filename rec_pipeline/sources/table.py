"""What a data source hands to validation: rows as read, with provenance, plus the source's own rules."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from rec_pipeline.validation import Rule


@dataclass
class SourceTable:
    """Rows of one table as read from a source.

    `frame` holds the canonical columns with the values as read (not yet coerced), the provenance columns
    `source_file` and `source_row` (1-based position of the record in its file), and any extra columns the
    source's own `rules` need. A source never drops a row: rows it cannot use are flagged by its rules and
    quarantined by validation like any other. `stats` counts the normalisations the source applied.
    """

    frame: pd.DataFrame
    files: list[str]
    rules: list[Rule] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
