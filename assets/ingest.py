"""The raw data as landed: `raw_events`, one partition per day of log files, and `item_catalog`; `dvc add` tracks both
raw folders, and the DVC md5s are the assets' versions (per day for the events)."""


import os
import warnings

import dagster as dg

from assets.resources import ProjectStore, RawDataSource
from rec_pipeline.engines.layout import raw_files
from rec_pipeline.versioning import dvc_track, file_md5s, partition_md5

# A day of logs is a partition (rec_pipeline/engines/layout.py says which day a file is): the sensor adds each new day
# and validates only its files; a backfill of any range runs from the UI. Dynamic, so the partitions are the days that
# have files, not every day since some start date.
EVENT_DAYS = dg.DynamicPartitionsDefinition(name="event_days")
# A range of days runs as one run (the demo's first run, a backfill), not one run per day: the stages after
# validation read every day once. (Dagster marks backfill policies as beta; the single-run one is what ranges need.)
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
ONE_RUN = dg.BackfillPolicy.single_run()


def day_versions(store: ProjectStore, source: RawDataSource) -> dict[str, str]:
    """Each day partition's md5 now, over its files' DVC md5s: what the sensor compares with what was materialised."""
    path = store.resolve(source.events_path)
    md5s = file_md5s(path, store.root_path())
    days: dict[str, dict[str, str]] = {}
    for file in raw_files(path):
        days.setdefault(file.partition, {})[file.name] = md5s[file.name] if file.name in md5s else md5s[path.name]
    return {day: partition_md5(files) for day, files in sorted(days.items())}


@dg.asset(group_name="ingest", kinds={"dvc"}, partitions_def=EVENT_DAYS, backfill_policy=ONE_RUN)
def raw_events(context: dg.AssetExecutionContext, store: ProjectStore, source: RawDataSource) -> dg.MaterializeResult:
    """Interaction logs as they landed in the raw folder, one partition per day of files, tracked with `dvc add`:
    each day's metadata holds its files and their md5 (over the files' DVC md5s), the run's the folder's DVC md5."""
    path = store.resolve(source.events_path)
    md5 = dvc_track(path, store.root_path())
    files = raw_files(path)
    md5s = file_md5s(path, store.root_path())
    for day in context.partition_keys:
        mine = [f for f in files if f.partition == day]
        if not mine:
            raise dg.Failure(f"day {day}: no file under {path} belongs to it any more (its partition outlived its files)")
        day_md5s = {f.name: md5s.get(f.name, md5s.get(path.name)) for f in mine}
        context.add_asset_metadata(
            {"md5": partition_md5(day_md5s), "files": len(mine), "file_names": dg.MetadataValue.json(sorted(day_md5s)),
             "bytes": sum(os.path.getsize(f.path) for f in mine)},
            partition_key=day,
        )
    context.log.info(f"events: {len(context.partition_keys)} day(s) of {len({f.partition for f in files})} at {path}, DVC md5 {md5}")
    return dg.MaterializeResult(metadata={"dvc_md5": dg.MetadataValue.text(md5), "path": dg.MetadataValue.path(str(path)), "format": source.format,
                                          "days_in_folder": len({f.partition for f in files})})


@dg.asset(group_name="ingest", kinds={"dvc"})
def item_catalog(context: dg.AssetExecutionContext, store: ProjectStore, source: RawDataSource) -> dg.MaterializeResult:
    """The item catalog as it landed in the raw folder, tracked with `dvc add`; the DVC md5 is the data version."""
    path = store.resolve(source.catalog_path)
    md5 = dvc_track(path, store.root_path())
    files = raw_files(path, partitioned=False)
    context.log.info(f"catalog: {len(files)} file(s) at {path}, DVC md5 {md5}")
    return dg.MaterializeResult(
        metadata={"dvc_md5": dg.MetadataValue.text(md5), "path": dg.MetadataValue.path(str(path)), "format": source.format,
                  "files": len(files), "bytes": sum(os.path.getsize(f.path) for f in files)},
        data_version=dg.DataVersion(md5),
    )
