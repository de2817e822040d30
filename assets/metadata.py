"""Metadata shared by assets and checks: Markdown tables a person reads in the Dagster UI, and what upstream assets
recorded in their latest materialisation."""


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


def latest_metadata(instance: dg.DagsterInstance, asset) -> dict:
    """The metadata values of `asset`'s latest materialisation ({} if it has none)."""
    event = instance.get_latest_materialization_event(asset.key)
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    return {key: value.value for key, value in metadata.items()}


def latest_data_versions(instance: dg.DagsterInstance, assets: list) -> dict[str, str]:
    """The data version each asset's latest materialisation recorded."""
    versions = {}
    for asset in assets:
        event = instance.get_latest_materialization_event(asset.key)
        tags = event.asset_materialization.tags if event and event.asset_materialization else {}
        versions[asset.key.to_user_string()] = (tags or {}).get("dagster/data_version", "unknown")
    return versions


def mlflow_metric_name(name: str) -> str:
    return name.replace("@", "_at_")  # MLflow metric names allow no "@"
