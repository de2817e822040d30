"""Metadata shared by assets and checks: Markdown tables a person reads in the Dagster UI, and what the upstream
materialisations a step read recorded."""


from dataclasses import dataclass
from typing import Iterable, Mapping

import dagster as dg
import pandas as pd

MAX_CELL_CHARS = 60


def _cell(value) -> str:
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def markdown_table(rows: Iterable[Mapping], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def rules_table(quarantined_by_rule: Mapping[str, int], failures_by_rule: Mapping[str, int], descriptions: Mapping[str, str]) -> str:
    """One line per rule that any row failed: quarantined counts each row once, under the first rule it fails."""
    rows = [
        {"rule": name, "requires": descriptions.get(name, ""), "quarantined": quarantined_by_rule.get(name, 0), "rows failing": failures}
        for name, failures in failures_by_rule.items()
        if failures
    ]
    if not rows:
        return "Every row passed every rule."
    return markdown_table(rows, ["rule", "requires", "quarantined", "rows failing"])


def quarantine_sample(quarantine: pd.DataFrame, per_rule: int = 2, columns: list[str] | None = None) -> str:
    """A few quarantined rows for each rule, with where they came from and why."""
    if quarantine.empty:
        return "No row was quarantined."
    shown = quarantine.groupby("rule", sort=False).head(per_rule)
    columns = columns or ["rule", "source_file", "source_row", "reason"]
    return markdown_table(shown.to_dict("records"), columns)


@dataclass(frozen=True)
class Consumed:
    """The materialisation of an upstream asset that a step read: the one Dagster records on the step's own
    materialisation as its input event pointer (what `rec-pipeline lineage` follows), never merely the latest."""

    storage_id: int | None
    data_version: str
    metadata: dict


def consumed(context: dg.AssetExecutionContext, asset) -> Consumed:
    # The step's input version info is what Dagster fetched before the step ran and writes as the
    # dagster/input_event_pointer/<asset> tag; a materialisation landing mid-step does not change it.
    info = context.get_step_execution_context().maybe_fetch_and_get_input_asset_version_info(asset.key)
    if info is None:
        return Consumed(None, "unknown", {})
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset.key, storage_ids=[info.storage_id]), limit=1
    ).records
    event = records[0].asset_materialization if records else None
    metadata = {key: value.value for key, value in event.metadata.items()} if event else {}
    return Consumed(info.storage_id, info.data_version.value if info.data_version else "unknown", metadata)


def mlflow_metric_name(name: str) -> str:
    return name.replace("@", "_at_")  # MLflow metric names allow no "@"
