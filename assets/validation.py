"""Validated data: every raw row is either valid (typed, user ids pseudonymised) or quarantined with rule and reason,
on the engine the `engine` resource names (rec_pipeline/engines/)."""


import dagster as dg

from assets.ingest import EVENT_DAYS, ONE_RUN, item_catalog, raw_events
from assets.metadata import quarantine_sample, rules_table
from assets.engine import DataEngine
from assets.resources import ProjectStore, RawDataSource, UserPseudonymiser, ValidationPolicy
from rec_pipeline.engines.layout import partitions, raw_files
from rec_pipeline.engines.steps import FileOutcome, ValidationJob, ValidationReport
from rec_pipeline.storage import read_table


def _metadata(outcome: FileOutcome, report: ValidationReport, quarantine) -> dict:
    share = outcome.rows_quarantined / outcome.rows_in if outcome.rows_in else 0.0
    return {
        "rows_in": outcome.rows_in,
        "rows_valid": outcome.rows_valid,
        "rows_quarantined": outcome.rows_quarantined,
        "quarantined_share": share,
        "quarantined_by_rule": dg.MetadataValue.json({k: v for k, v in outcome.quarantined_by_rule.items() if v}),
        "failures_by_rule": dg.MetadataValue.json({k: v for k, v in outcome.failures_by_rule.items() if v}),
        "rules": dg.MetadataValue.md(rules_table(outcome.quarantined_by_rule, outcome.failures_by_rule, report.rule_descriptions)),
        "quarantine_sample": dg.MetadataValue.md(quarantine_sample(quarantine)),
        "source_stats": dg.MetadataValue.json(outcome.stats),
        "dagster/row_count": outcome.rows_valid,
    }


def _log(context: dg.AssetExecutionContext, table: str, outcome: FileOutcome, engine: DataEngine) -> None:
    share = outcome.rows_quarantined / outcome.rows_in if outcome.rows_in else 0.0
    context.log.info(
        f"{table}: {outcome.rows_in:,} rows in, {outcome.rows_valid:,} valid, {outcome.rows_quarantined:,} quarantined ({share:.2%}) "
        f"on the {engine.describe()} engine"
    )


@dg.asset(group_name="validation", deps=[item_catalog], kinds={"pandas", "spark", "parquet"})
def validated_catalog(
    context: dg.AssetExecutionContext, store: ProjectStore, source: RawDataSource, policy: ValidationPolicy, engine: DataEngine
) -> dg.MaterializeResult:
    """Catalog rows that pass every rule, typed; the rest in a quarantine table with rule and reason."""
    folders = store.table_folders("catalog")
    files = raw_files(store.resolve(source.catalog_path), partitioned=False)
    job = ValidationJob("catalog", source.format, tuple(files), policy.settings(), folders, cache_dir=str(source.cache_dir(store)))
    report = engine.engine().validate(job)
    outcome = report.totals()
    assert outcome.rows_in == outcome.rows_valid + outcome.rows_quarantined, "a row was lost in validation"
    _log(context, "catalog", outcome, engine)
    return dg.MaterializeResult(metadata={
        **_metadata(outcome, report, read_table(folders.quarantine)),
        "engine": engine.describe(),
        "path": dg.MetadataValue.path(str(folders.valid)),
        "quarantine_path": dg.MetadataValue.path(str(folders.quarantine)),
    })


@dg.asset(
    group_name="validation", deps=[raw_events, validated_catalog], kinds={"pandas", "spark", "parquet"}, partitions_def=EVENT_DAYS, backfill_policy=ONE_RUN,
)
def validated_events(
    context: dg.AssetExecutionContext,
    store: ProjectStore,
    source: RawDataSource,
    policy: ValidationPolicy,
    pseudonymiser: UserPseudonymiser,
    engine: DataEngine,
) -> dg.MaterializeResult:
    """Events that pass every rule (known item, no future timestamp, an id not seen before, ...), with pseudonymous user
    ids, the rest quarantined: only the days of this run are read, and a repeated event id is found in the earlier days
    through their key index, so a new day costs a day."""
    folders = store.table_folders("events")
    files = raw_files(store.resolve(source.events_path))
    days = sorted(context.partition_keys)
    every_day = partitions(files)
    missing = sorted(set(days) - set(every_day))
    if missing:
        raise dg.Failure(f"day(s) {', '.join(missing)}: no raw file belongs to them any more")
    job = ValidationJob(
        "events", source.format, tuple(f for f in files if f.partition in days), policy.settings(), folders,
        salt=pseudonymiser.salt(store), cache_dir=str(source.cache_dir(store)),
        history=tuple(d for d in every_day if d not in days and d < days[-1]), keep=tuple(every_day), catalog=str(store.validated_path("catalog")),
    )
    report = engine.engine().validate(job)
    quarantine = read_table([folders.quarantine / day for day in days])  # the run's days in one read
    day_of = {f.name: f.partition for f in job.files}
    by_day = dict(tuple(quarantine.groupby(quarantine["source_file"].map(day_of), sort=False)))
    for day in days:
        outcome = report.totals(day)
        assert outcome.rows_in == outcome.rows_valid + outcome.rows_quarantined, "a row was lost in validation"
        context.add_asset_metadata(_metadata(outcome, report, by_day.get(day, quarantine.iloc[0:0])), partition_key=day)
    _log(context, f"events, {len(days)} day(s)", report.totals(), engine)
    return dg.MaterializeResult(metadata={
        "engine": engine.describe(),
        "path": dg.MetadataValue.path(str(folders.valid)),
        "quarantine_path": dg.MetadataValue.path(str(folders.quarantine)),
    })
