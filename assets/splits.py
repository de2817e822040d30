"""`training_splits`: the validated events split in time into train, validation and test, with cold items and new users."""

import json

import dagster as dg
import pandas as pd

from assets.resources import ProjectStore
from assets.validation import validated_catalog, validated_events
from rec_pipeline.splits import DEFAULT_EVENT_WEIGHTS, SplitConfig, make_splits
from rec_pipeline.storage import atomic_path, write_parquet


class TrainingSplitsConfig(dg.Config):
    validation_days: int = 7  # the cuts, counted back from the day after the last event...
    test_days: int = 7
    train_cut: str | None = None  # ...unless both cuts are given as ISO dates
    validation_cut: str | None = None
    event_weights: dict[str, float] = dict(DEFAULT_EVENT_WEIGHTS)


@dg.asset(group_name="training", deps=[validated_events, validated_catalog], kinds={"pandas", "parquet"})
def training_splits(context: dg.AssetExecutionContext, config: TrainingSplitsConfig, store: ProjectStore) -> dg.MaterializeResult:
    """Weighted interactions in one global temporal split; items with no train interaction are cold-start items."""
    events = pd.read_parquet(store.validated_path("events"), columns=["user_id", "item_id", "ts", "event_type"])
    catalog = pd.read_parquet(store.validated_path("catalog"), columns=["item_id"])
    splits = make_splits(
        events,
        catalog,
        SplitConfig(config.validation_days, config.test_days, config.train_cut, config.validation_cut, dict(config.event_weights)),
    )
    folder = store.data_path("splits")
    write_parquet(splits.interactions, folder / "interactions.parquet")
    write_parquet(splits.items, folder / "items.parquet")
    write_parquet(splits.users, folder / "users.parquet")
    summary = splits.summary()
    with atomic_path(folder / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    context.log.info(
        f"train < {summary['train_cut']} <= validation < {summary['validation_cut']} <= test: "
        f"{summary['train_interactions']:,} / {summary['validation_interactions']:,} / {summary['test_interactions']:,} "
        f"interactions; {summary['cold_items']:,} cold items, {summary['new_users']:,} new users"
    )
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in summary.items() if isinstance(v, int)},
            "train_cut": summary["train_cut"],
            "validation_cut": summary["validation_cut"],
            "event_weights": dg.MetadataValue.json(dict(config.event_weights)),
            "path": dg.MetadataValue.path(str(folder)),
        }
    )
