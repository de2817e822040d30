"""The raw data as landed: `raw_events` and `item_catalog`, versioned by the DVC md5 of their raw path."""


import dagster as dg

from assets.resources import ProjectStore, RawDataSource
from rec_pipeline.sources.files import data_files
from rec_pipeline.sources.formats import read_source
from rec_pipeline.versioning import dvc_track


def _land(context: dg.AssetExecutionContext, table: str, raw_path: str, store: ProjectStore, source: RawDataSource) -> dg.MaterializeResult:
    path = store.resolve(raw_path)
    md5 = dvc_track(path, store.root_path())
    rows = read_source(table, path, source.format, source.cache_dir(store))
    files = data_files(path)
    metadata = {
        "dvc_md5": dg.MetadataValue.text(md5),
        "path": dg.MetadataValue.path(str(path)),
        "format": source.format,
        "files": len(files),
        "bytes": sum(f.stat().st_size for f in files),
        "rows": len(rows.frame),
        "source_stats": dg.MetadataValue.json(rows.stats),
    }
    context.log.info(f"{table}: {len(rows.frame):,} rows in {len(files)} file(s) at {path}, DVC md5 {md5}")
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(md5))


@dg.asset(group_name="ingest", kinds={"dvc", "pandas"})
def raw_events(context: dg.AssetExecutionContext, store: ProjectStore, source: RawDataSource) -> dg.MaterializeResult:
    """Interaction logs as they landed in the raw folder, tracked with `dvc add`; the DVC md5 is the data version."""
    return _land(context, "events", source.events_path, store, source)


@dg.asset(group_name="ingest", kinds={"dvc", "pandas"})
def item_catalog(context: dg.AssetExecutionContext, store: ProjectStore, source: RawDataSource) -> dg.MaterializeResult:
    """The item catalog as it landed in the raw folder, tracked with `dvc add`; the DVC md5 is the data version."""
    return _land(context, "catalog", source.catalog_path, store, source)
