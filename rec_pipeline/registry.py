"""The MLflow model registry: which ranker version is the champion, loading a version, and moving the alias."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rec_pipeline.ranker.export import OnnxRanker

REGISTERED_MODEL = "rec_pipeline_ranker"
CHAMPION = "champion"


def client_for(tracking_uri: str):
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix) and not Path(tracking_uri[len(prefix) :]).exists():
        raise FileNotFoundError(f"no MLflow store at {tracking_uri[len(prefix):]} (run the README's first command first)")
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def champion_version(client, name: str = REGISTERED_MODEL) -> str | None:
    """The version the `champion` alias points at, or None when no version holds it."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def newest_version(client, name: str = REGISTERED_MODEL) -> str:
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        raise LookupError(f"no registered versions of {name!r} in the registry (materialise ranker_onnx first)")
    return str(max(versions, key=lambda v: int(v.version)).version)


def download_version(tracking_uri: str, name: str, version: str, into: Path | None = None) -> tuple[Path, list[str]]:
    """The version's files in `into` (default: a new temporary folder): the folder of its extra files (items.json,
    the live graphs, ...) and its item ids."""
    import json

    import mlflow

    folder = Path(mlflow.artifacts.download_artifacts(
        f"models:/{name}/{version}", dst_path=str(into or tempfile.mkdtemp(prefix="rec_pipeline_model_")), tracking_uri=tracking_uri
    ))
    extra = folder / "extra_files"
    items = extra / "items.json"
    if not items.exists():
        raise FileNotFoundError(f"models:/{name}/{version}: no items.json among its files")
    return extra, [str(i) for i in json.loads(items.read_text())]


def load_version(tracking_uri: str, name: str, version: str, threads: int = 0) -> OnnxRanker:
    extra, _ = download_version(tracking_uri, name, version)
    return OnnxRanker.from_mlflow_model(extra.parent, threads)


def load_registered(tracking_uri: str, name: str = REGISTERED_MODEL, threads: int = 0) -> tuple[OnnxRanker, str]:
    """The version aliased `champion`, or the newest version if no champion is set yet; and which one it was."""
    client = client_for(tracking_uri)
    version = champion_version(client, name) or newest_version(client, name)
    return load_version(tracking_uri, name, version, threads), f"models:/{name}/{version}"
