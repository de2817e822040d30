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


def load_version(tracking_uri: str, name: str, version: str, threads: int = 0) -> OnnxRanker:
    import mlflow

    folder = mlflow.artifacts.download_artifacts(
        f"models:/{name}/{version}", dst_path=tempfile.mkdtemp(prefix="rec_pipeline_model_"), tracking_uri=tracking_uri
    )
    return OnnxRanker.from_mlflow_model(folder, threads)


def load_registered(tracking_uri: str, name: str = REGISTERED_MODEL, threads: int = 0) -> tuple[OnnxRanker, str]:
    """The version aliased `champion`, or the newest version if no champion is set yet; and which one it was."""
    client = client_for(tracking_uri)
    version = champion_version(client, name)
    if version is None:
        versions = client.search_model_versions(f"name = '{name}'")
        if not versions:
            raise LookupError(f"no registered versions of {name!r} in {tracking_uri} (materialise ranker_onnx first)")
        version = max(versions, key=lambda v: int(v.version)).version
    return load_version(tracking_uri, name, version, threads), f"models:/{name}/{version}"
