"""Validated data: every raw row is either valid (typed, user ids pseudonymised) or quarantined with rule and reason."""


import dagster as dg
import pandas as pd

from assets.ingest import item_catalog, raw_events
from assets.metadata import quarantine_sample, rules_table
from assets.resources import ProjectStore, RawDataSource, UserPseudonymiser, ValidationPolicy
from rec_pipeline.privacy import desensitise_queries, pseudonymise
from rec_pipeline.sources.formats import read_source
from rec_pipeline.storage import write_parquet
from rec_pipeline.validation import ValidationResult, validate_catalog, validate_events


def _publish(context: dg.AssetExecutionContext, table: str, result: ValidationResult, store: ProjectStore, stats: dict) -> dg.MaterializeResult:
    valid_path = write_parquet(result.valid, store.validated_path(table))
    quarantine_path = write_parquet(result.quarantine, store.quarantine_path(table))
    assert result.rows_in == result.rows_valid + result.rows_quarantined, "a row was lost in validation"
    share = result.rows_quarantined / result.rows_in if result.rows_in else 0.0
    context.log.info(
        f"{table}: {result.rows_in:,} rows in, {result.rows_valid:,} valid, {result.rows_quarantined:,} quarantined ({share:.2%})"
    )
    return dg.MaterializeResult(
        metadata={
            "rows_in": result.rows_in,
            "rows_valid": result.rows_valid,
            "rows_quarantined": result.rows_quarantined,
            "quarantined_share": share,
            "quarantined_by_rule": dg.MetadataValue.json({k: v for k, v in result.quarantined_by_rule.items() if v}),
            "failures_by_rule": dg.MetadataValue.json({k: v for k, v in result.failures_by_rule.items() if v}),
            "rules": dg.MetadataValue.md(rules_table(result.quarantined_by_rule, result.failures_by_rule, result.rule_descriptions)),
            "quarantine_sample": dg.MetadataValue.md(quarantine_sample(result.quarantine)),
            "source_stats": dg.MetadataValue.json(stats),
            "path": dg.MetadataValue.path(str(valid_path)),
            "quarantine_path": dg.MetadataValue.path(str(quarantine_path)),
            "dagster/row_count": result.rows_valid,
        }
    )


@dg.asset(group_name="validation", deps=[item_catalog], kinds={"pandas", "parquet"})
def validated_catalog(
    context: dg.AssetExecutionContext, store: ProjectStore, source: RawDataSource, policy: ValidationPolicy
) -> dg.MaterializeResult:
    """Catalog rows that pass every rule, typed; the rest in a quarantine table with rule and reason."""
    rows = read_source("catalog", store.resolve(source.catalog_path), source.format, source.cache_dir(store))
    result = validate_catalog(rows.frame, policy.settings(), rows.rules)
    return _publish(context, "catalog", result, store, rows.stats)


@dg.asset(group_name="validation", deps=[raw_events, validated_catalog], kinds={"pandas", "parquet"})
def validated_events(
    context: dg.AssetExecutionContext,
    store: ProjectStore,
    source: RawDataSource,
    policy: ValidationPolicy,
    pseudonymiser: UserPseudonymiser,
) -> dg.MaterializeResult:
    """Events that pass every rule (known item, no future timestamp, ...), with pseudonymous user ids; the rest quarantined."""
    rows = read_source("events", store.resolve(source.events_path), source.format, source.cache_dir(store))
    catalog_ids = pd.read_parquet(store.validated_path("catalog"), columns=["item_id"])["item_id"]
    result = validate_events(rows.frame, catalog_ids, policy.settings(), rows.rules)
    # Raw user ids stop here: neither the valid nor the quarantined table, nor any metadata, carries them.
    salt = pseudonymiser.salt(store)
    result.valid["user_id"] = pseudonymise(result.valid["user_id"], salt)
    result.quarantine["user_id"] = pseudonymise(result.quarantine["user_id"], salt)
    # Queries lose e-mail addresses and long numbers here too, as at the service's edge.
    for table in (result.valid, result.quarantine):
        table["query"] = desensitise_queries(table["query"])
    return _publish(context, "events", result, store, rows.stats)
