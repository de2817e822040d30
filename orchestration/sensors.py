"""Retraining: `new_raw_data` asks for one run of the `main` job per new version of the raw data (the DVC md5 of the
raw folders, as `dvc add` would record it), and `nightly_retrain` runs it every night besides."""

import dagster as dg

from assets.ingest import item_catalog, raw_events
from assets.resources import ProjectStore, RawDataSource
from rec_pipeline.schema import DataFormatError
from rec_pipeline.versioning import current_md5


def raw_data_version(store: ProjectStore, source: RawDataSource) -> str:
    """The raw data's version now: the DVC md5 of the events and of the catalog."""
    root = store.root_path()
    events = current_md5(store.resolve(source.events_path), root)
    catalog = current_md5(store.resolve(source.catalog_path), root)
    return f"events {events}, catalog {catalog}"


def materialised_version(instance: dg.DagsterInstance) -> str | None:
    """The raw data version the latest materialisations of raw_events and item_catalog recorded."""
    versions = []
    for asset in (raw_events, item_catalog):
        event = instance.get_latest_materialization_event(asset.key)
        if event is None or event.asset_materialization is None:
            return None
        versions.append((event.asset_materialization.tags or {}).get("dagster/data_version"))
    return f"events {versions[0]}, catalog {versions[1]}"


def retraining(job) -> tuple[dg.SensorDefinition, dg.ScheduleDefinition]:
    @dg.sensor(job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
    def new_raw_data(context: dg.SensorEvaluationContext, store: ProjectStore, source: RawDataSource):
        """One retraining run per new raw data version: the run key is the version, so Dagster never launches a
        version twice, and the cursor remembers the last version requested."""
        try:
            version = raw_data_version(store, source)
        except DataFormatError as err:  # nothing landed yet (a fresh clone before `make demo`)
            return dg.SkipReason(f"no raw data to version: {err}")
        if version == context.cursor:
            return dg.SkipReason(f"raw data unchanged since the last request ({version})")
        if version == materialised_version(context.instance):
            context.update_cursor(version)
            return dg.SkipReason(f"raw data already materialised ({version})")
        context.update_cursor(version)
        return dg.RunRequest(run_key=version, tags={"rec_pipeline/raw_data_version": version})

    nightly = dg.ScheduleDefinition(
        name="nightly_retrain", job=job, cron_schedule="0 3 * * *", execution_timezone="UTC",
        description="Retrain every night at 03:00 UTC, whatever the sensor saw.",
    )
    return new_raw_data, nightly
