"""Blocking checks on the validated tables: if one fails, nothing downstream of that table materialises."""


import warnings
from pathlib import Path

import dagster as dg
import pandas as pd

# The events' checks are partitioned like the events, so that a run checks the days it validated and a new day costs a
# day. Dagster marks partitioned checks as a preview; they are what a daily partitioned asset's checks need.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)

from assets.metadata import markdown_table, quarantine_sample
from assets.engine import DataEngine
from assets.resources import ProjectStore, ValidationPolicy
from assets.validation import validated_catalog, validated_events
from rec_pipeline.expectations import SuiteOutcome, catalog_membership, catalog_suite, events_suite, run_suite
from rec_pipeline.storage import read_table


def _run_parts(context, folder: Path, partitioned: bool) -> list[Path]:
    """What the check looks at: the whole table, or for the partitioned events the days this run validated."""
    return [folder / day for day in context.partition_keys] if partitioned else [folder]


def _quarantine_share_check(asset: dg.AssetsDefinition, table: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="quarantine_share",
        blocking=True,
        description="Fails when the quarantined share of rows passes the policy's threshold (default 5%); for the events, "
        "over the days the run validated.",
        partitions_def=asset.partitions_def,
    )
    def check(context: dg.AssetCheckExecutionContext, store: ProjectStore, policy: ValidationPolicy) -> dg.AssetCheckResult:
        partitioned = asset.partitions_def is not None
        rows_valid = len(read_table(_run_parts(context, store.validated_path(table), partitioned), columns=["source_row"]))
        quarantine = read_table(_run_parts(context, store.quarantine_path(table), partitioned))
        rows_in = rows_valid + len(quarantine)
        share = len(quarantine) / rows_in if rows_in else 1.0
        passed = rows_in > 0 and share <= policy.max_quarantine_share
        by_rule = quarantine["rule"].value_counts()
        verdict = "within" if passed else "above"
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(quarantine):,} of {rows_in:,} rows quarantined ({share:.2%}), {verdict} the "
                f"{policy.max_quarantine_share:.0%} threshold"
                + ("" if passed else f"; rules: {', '.join(f'{rule} ({n:,})' for rule, n in by_rule.items())}")
            ),
            metadata={
                "rows_in": rows_in,
                "rows_quarantined": len(quarantine),
                "quarantined_share": share,
                "threshold": policy.max_quarantine_share,
                "quarantined_by_rule": dg.MetadataValue.json({str(k): int(v) for k, v in by_rule.items()}),
                "sample_rows": dg.MetadataValue.md(quarantine_sample(quarantine, columns=_sample_columns(table))),
            },
        )

    return check


def _sample_columns(table: str) -> list[str]:
    key = "event_id" if table == "events" else "item_id"
    return ["rule", "source_file", "source_row", key, "reason"]


def _suite_result(outcome: SuiteOutcome, engine: DataEngine) -> dg.AssetCheckResult:
    rows = [
        {
            "expectation": o.expectation,
            "column": o.column or "",
            "passed": "yes" if o.success else "NO",
            "unexpected": "" if o.unexpected_count is None else o.unexpected_count,
            "observed": o.observed,
        }
        for o in outcome.outcomes
    ]
    failed = outcome.failed
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"all {len(outcome.outcomes)} expectations met"
            if outcome.success
            else f"{len(failed)} of {len(outcome.outcomes)} expectations failed: "
            + ", ".join(f"{o.expectation}({o.column})" if o.column else o.expectation for o in failed)
        ),
        metadata={
            "engine": engine.describe(),
            "expectations": len(outcome.outcomes),
            "failed_expectations": len(failed),
            "results": dg.MetadataValue.md(markdown_table(rows, ["expectation", "column", "passed", "unexpected", "observed"])),
        },
    )


@dg.asset_check(
    asset=validated_catalog,
    name="great_expectations",
    blocking=True,
    description="Great Expectations suite on the valid catalog: columns and types, unique ids, non-empty titles, prices ≥ 0.",
)
def catalog_expectations(store: ProjectStore, policy: ValidationPolicy, engine: DataEngine) -> dg.AssetCheckResult:
    if engine.name == "spark":
        frame = _spark_read(engine, [store.validated_path("catalog")])
        return _suite_result(run_suite(frame, "validated_catalog", catalog_suite(policy.max_title_chars, "spark")), engine)
    frame = read_table(store.validated_path("catalog"))
    return _suite_result(run_suite(frame, "validated_catalog", catalog_suite(policy.max_title_chars)), engine)


@dg.asset_check(
    asset=validated_events,
    name="great_expectations",
    blocking=True,
    description=(
        "Great Expectations suite on the valid events: columns and types, required ids, event types, timestamps in the "
        "window and not in the future, prices ≥ 0, purchase quantities > 0, unique event ids, pseudonymous user ids, "
        "every item in the catalog; over the days the run validated."
    ),
    partitions_def=validated_events.partitions_def,
)
def events_expectations(
    context: dg.AssetCheckExecutionContext, store: ProjectStore, policy: ValidationPolicy, engine: DataEngine
) -> dg.AssetCheckResult:
    settings = policy.settings()
    parts = _run_parts(context, store.validated_path("events"), partitioned=True)
    if engine.name == "spark":
        frame = _spark_read(engine, parts)
        membership = catalog_membership(frame, _spark_read(engine, [store.validated_path("catalog")]))
        suite = events_suite(None, settings.earliest, settings.latest, "spark")
        return _suite_result(run_suite(frame, "validated_events", suite, extra=[membership]), engine)
    catalog_ids = read_table(store.validated_path("catalog"), columns=["item_id"])["item_id"]
    suite = events_suite(catalog_ids, settings.earliest, settings.latest)
    return _suite_result(run_suite(read_table(parts), "validated_events", suite), engine)


def _spark_read(engine: DataEngine, folders: list[Path]):
    """The table's parts as one Spark DataFrame, for GE's Spark data source."""
    return engine.engine().session.read.option("recursiveFileLookup", "true").parquet(*[str(f) for f in folders])


validation_checks = [
    _quarantine_share_check(validated_catalog, "catalog"),
    _quarantine_share_check(validated_events, "events"),
    catalog_expectations,
    events_expectations,
]
