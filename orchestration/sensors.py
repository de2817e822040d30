"""Retraining: `new_raw_data` asks for one run of the `main` job per new version of the raw data (each day's md5 over
its files' DVC md5s, and the catalog's DVC md5), over only the days that changed, and `nightly_retrain` runs it every
night besides, over every day."""

import hashlib
import json
import os

import dagster as dg

from assets.ingest import EVENT_DAYS, day_versions, item_catalog, raw_events
from assets.resources import ProjectStore, RawDataSource
from rec_pipeline.schema import DataFormatError
from rec_pipeline.versioning import current_md5

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# REC_PIPELINE_SENSORS=off: the retraining sensor starts stopped (a machine where runs are launched by hand, from the UI
# or the CLI; turn it on in the UI's Automation page). On by default.
SENSORS_ENV_VAR = "REC_PIPELINE_SENSORS"


def day_range_tags(first: str, last: str) -> dict[str, str]:
    """The tags that make a run of the `main` job cover the days first..last (one run: the backfill policy is single-run)."""
    return {RANGE_START: first, RANGE_END: last}


def register_days(instance: dg.DagsterInstance, days: list[str]) -> list[str]:
    """Make `days` the event-day partitions (new ones added, ones whose files are gone removed); returns them."""
    known = set(instance.get_dynamic_partitions(EVENT_DAYS.name))
    new = [d for d in days if d not in known]
    if new:
        instance.add_dynamic_partitions(EVENT_DAYS.name, new)
    for gone in sorted(known - set(days)):
        instance.delete_dynamic_partition(EVENT_DAYS.name, gone)
    return days


def raw_data_version(store: ProjectStore, source: RawDataSource) -> dict:
    """The raw data's version now: each day's md5 and the catalog's DVC md5."""
    return {"days": day_versions(store, source), "catalog": current_md5(store.resolve(source.catalog_path), store.root_path())}


def materialised_version(instance: dg.DagsterInstance, days) -> dict:
    """What the latest materialisations of each raw_events day and of item_catalog recorded."""
    recorded = {}
    for record in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=raw_events.key, asset_partitions=list(days)), limit=10 * len(days) + 10).records:
        event = record.asset_materialization
        if event.partition not in recorded and "md5" in event.metadata:
            recorded[event.partition] = event.metadata["md5"].value
    catalog = instance.get_latest_materialization_event(item_catalog.key)
    catalog_md5 = catalog.asset_materialization.metadata["dvc_md5"].value if catalog and catalog.asset_materialization else None
    return {"days": recorded, "catalog": catalog_md5}


def version_key(version: dict) -> str:
    digest = hashlib.md5(json.dumps(version["days"], sort_keys=True).encode()).hexdigest()
    return f"events {digest}, catalog {version['catalog']}"


def retraining(job) -> tuple[dg.SensorDefinition, dg.ScheduleDefinition]:
    sensors_off = os.environ.get(SENSORS_ENV_VAR, "on") == "off"

    @dg.sensor(job=job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED if sensors_off else dg.DefaultSensorStatus.RUNNING)
    def new_raw_data(context: dg.SensorEvaluationContext, store: ProjectStore, source: RawDataSource):
        """One retraining run per new raw data version, over the days that changed and those after them (a later day
        may repeat an event id of a changed one; the first occurrence decides which is kept), or every day when the
        catalog changed (every event is checked against it). The run key is the version, so Dagster never launches a
        version twice; the cursor remembers the last version requested."""
        try:
            version = raw_data_version(store, source)
        except DataFormatError as err:  # nothing landed yet (a fresh clone before `make demo`)
            return dg.SkipReason(f"no raw data to version: {err}")
        days = list(version["days"])
        if not days:
            return dg.SkipReason("no day of raw events to version")
        key = version_key(version)
        if key == context.cursor:
            return dg.SkipReason(f"raw data unchanged since the last request ({key})")
        done = materialised_version(context.instance, days)
        if done == version:
            return dg.SensorResult(skip_reason=f"raw data already materialised ({key})", cursor=key)
        changed = days if done["catalog"] != version["catalog"] else [d for d in days if done["days"].get(d) != version["days"][d]]
        known = set(context.instance.get_dynamic_partitions(EVENT_DAYS.name))
        first = min(changed) if changed else days[-1]  # only days removed: the training reads what is left
        request = dg.RunRequest(run_key=key, tags={**day_range_tags(first, days[-1]), "rec_pipeline/raw_data_version": key})
        return dg.SensorResult(
            run_requests=[request],
            dynamic_partitions_requests=[
                *([EVENT_DAYS.build_add_request([d for d in days if d not in known])] if set(days) - known else []),
                *([EVENT_DAYS.build_delete_request(sorted(known - set(days)))] if known - set(days) else []),
            ],
            cursor=key,
        )

    @dg.schedule(job=job, cron_schedule="0 3 * * *", execution_timezone="UTC", name="nightly_retrain",
                 description="Retrain every night at 03:00 UTC over every day, whatever the sensor saw.")
    def nightly(context: dg.ScheduleEvaluationContext):
        days = sorted(context.instance.get_dynamic_partitions(EVENT_DAYS.name))
        if not days:
            return dg.SkipReason("no day of raw events registered yet (the sensor or `rec-pipeline demo` registers them)")
        return dg.RunRequest(tags=day_range_tags(days[0], days[-1]))

    return new_raw_data, nightly
