"""`training_splits`: the validated positive events split in time into train, validation and test, with cold items
and new users."""

import json

import dagster as dg
import pandas as pd

from assets.config import from_dataclasses
from assets.engine import DataEngine
from assets.resources import ProjectStore
from assets.ingest import raw_events
from assets.validation import validated_catalog, validated_events
from rec_pipeline.splits import SplitConfig
from rec_pipeline.storage import atomic_path
from rec_pipeline.settings import from_settings

TrainingSplitsConfig = from_dataclasses("TrainingSplitsConfig", SplitConfig)


@dg.asset(group_name="training", deps=[validated_events, validated_catalog], kinds={"pandas", "spark", "parquet"})
def training_splits(context: dg.AssetExecutionContext, config: TrainingSplitsConfig, store: ProjectStore, engine: DataEngine) -> dg.MaterializeResult:
    """The positive interactions of every day in one global temporal split; items with no train interaction are
    cold-start items. Every consumer (ranker, eval_report, recommend) reads its interactions and the positive events
    from here."""
    folder = store.data_path("splits")
    days_read = _days_read(context.instance)
    summary = engine.engine().training_splits(store.validated_path("events"), store.validated_path("catalog"), from_settings(SplitConfig, config), folder)
    with atomic_path(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    context.log.info(
        f"{', '.join(summary['positive_events'])}: train < {summary['validation_start']} <= validation < {summary['test_start']} <= test: "
        f"{summary['train_interactions']:,} / {summary['validation_interactions']:,} / {summary['test_interactions']:,} "
        f"interactions ({summary['test_users']:,} test users); {summary['cold_items']:,} cold items, {summary['new_users']:,} new users"
    )
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in summary.items() if isinstance(v, int)},
            "engine": engine.describe(),
            # Which materialisation of each day was read (one input pointer cannot say): what `rec-pipeline lineage` follows.
            "days_read": dg.MetadataValue.json(days_read),
            "positive_events": ", ".join(summary["positive_events"]),
            "validation_start": summary["validation_start"],
            "test_start": summary["test_start"],
            "path": dg.MetadataValue.path(str(folder)),
        }
    )


def _days_read(instance: dg.DagsterInstance) -> dict:
    """Each event day's latest validated_events materialisation, and the raw_events one it was validated from."""
    latest = {asset.key.to_user_string(): instance.get_latest_storage_id_by_partition(asset.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
              for asset in (validated_events, raw_events)}
    return {day: {"validated_events": sid, "raw_events": latest["raw_events"].get(day)} for day, sid in sorted(latest["validated_events"].items())
            if latest["raw_events"].get(day) is not None}
