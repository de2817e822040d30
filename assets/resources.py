"""Resources shared by the assets and checks: where files live, where raw data lands, the validation policy."""


from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd

from assets.config import from_dataclasses
from rec_pipeline.compute import Device, describe_device, resolve_device
from rec_pipeline.engines.layout import TableFolders
from rec_pipeline.privacy import SALT_ENV_VAR, SALT_FILE, load_salt
from rec_pipeline.schema import FORMATS
from rec_pipeline.validation import ValidationSettings
from rec_pipeline.settings import from_settings


class ProjectStore(dg.ConfigurableResource):
    """The project root (a DVC repository) and the data folder inside it, where every asset keeps its files."""

    root: str = "."
    data_dir: str = "data"

    def root_path(self) -> Path:
        return Path(self.root).resolve()

    def resolve(self, path: str) -> Path:
        """`path` as given if absolute, else relative to the project root."""
        p = Path(path)
        return p if p.is_absolute() else self.root_path() / p

    def data_path(self, *parts: str) -> Path:
        return self.resolve(self.data_dir).joinpath(*parts)

    def table_folders(self, table: str) -> TableFolders:
        """The validated table's folders (rec_pipeline/engines/layout.py): valid rows, quarantined rows, and for the
        partitioned events the key index."""
        return TableFolders.under(self.data_path("validated"), table, key_index=table == "events")

    def validated_path(self, table: str) -> Path:
        return self.table_folders(table).valid

    def quarantine_path(self, table: str) -> Path:
        return self.table_folders(table).quarantine


class RawDataSource(dg.ConfigurableResource):
    """Where raw data lands and its format: the canonical schema, or the UCI Online Retail CSV (both tables in one file)."""

    format: Literal[FORMATS] = "canonical"
    events_path: str = "data/raw/events"
    catalog_path: str = "data/raw/catalog"

    def cache_dir(self, store: "ProjectStore") -> Path:
        """Where a source that holds both tables in one file keeps its parse, so a run parses it once."""
        return store.data_path("cache", "sources")


class ValidationPolicy(from_dataclasses("ValidationPolicyFields", ValidationSettings, exclude=("now",), base=dg.ConfigurableResource)):
    """Limits applied to every row, and the quarantined share above which the blocking checks fail (the fields and
    defaults of rec_pipeline.validation.ValidationSettings)."""

    def settings(self, now: pd.Timestamp | None = None) -> ValidationSettings:
        return from_settings(ValidationSettings, self, now=now if now is not None else pd.Timestamp.now(tz="UTC"))


class UserPseudonymiser(dg.ConfigurableResource):
    """The salt for user-id pseudonyms: from the environment variable if set, else a random salt kept in a file."""

    salt_env_var: str = SALT_ENV_VAR

    def salt(self, store: "ProjectStore") -> str:
        return load_salt(store.data_path(SALT_FILE), self.salt_env_var)


class ComputeDevice(dg.ConfigurableResource):
    """Where model code runs: `auto` takes a CUDA GPU when one is visible (at bf16/fp16), else the CPU; `cuda` without
    one is an error (rec_pipeline.compute, which the encoder uses too)."""

    device: Device = "auto"
    threads: int = 0  # CPU threads; 0: every core

    def torch_device(self) -> str:
        return resolve_device(self.device)

    def describe(self) -> str:
        return describe_device(self.device)


class MlflowTracking(dg.ConfigurableResource):
    """Where training runs are recorded: an MLflow tracking store with the model registry (sqlite by default).

    Relative paths are under the project root, so `mlflow ui --backend-store-uri sqlite:///mlflow.db` run there shows
    every run; artifacts (model files) go to `artifact_dir`.
    """

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_dir: str = "mlartifacts"
    experiment: str = "rec_pipeline"

    def resolved_uri(self, store: ProjectStore) -> str:
        prefix = "sqlite:///"
        if self.tracking_uri.startswith(prefix) and not Path(self.tracking_uri[len(prefix) :]).is_absolute():
            return prefix + str(store.resolve(self.tracking_uri[len(prefix) :]))
        return self.tracking_uri

    def start(self, store: ProjectStore):
        """Point MLflow at this store and experiment; returns the mlflow module, ready for `mlflow.start_run`."""
        import os

        import mlflow

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file floods the run log
        mlflow.set_tracking_uri(self.resolved_uri(store))
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment, artifact_location=store.resolve(self.artifact_dir).as_uri())
        mlflow.set_experiment(self.experiment)
        return mlflow

    @staticmethod
    def onnx_requirements() -> list[str]:
        """What a logged ONNX model needs to be served (`mlflow models serve`), pinned to what is installed: the same
        list MLflow infers (it adds mlflow itself), given rather than inferred because inferring loads the model in a
        subprocess to see what it imports, 6.5 s per logged model."""
        import mlflow.onnx
        import numpy

        return [*mlflow.onnx.get_default_pip_requirements(), f"numpy=={numpy.__version__}"]
