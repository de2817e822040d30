"""The Definitions loaded by workspace.yaml: every asset, its checks, the resources, and the `main` job, configured by
the project's config file when `REC_PIPELINE_CONFIG` names one (orchestration/config.py)."""


import os

import dagster as dg
import pydantic

from assets.embeddings import item_embeddings
from assets.export import ranker_onnx, ranker_tensorrt
from assets.ingest import item_catalog, raw_events
from assets.ranker import ranker
from assets.report import eval_report
from assets.engine import DataEngine
from assets.resources import ComputeDevice, MlflowTracking, ProjectStore, RawDataSource, UserPseudonymiser, ValidationPolicy
from orchestration.config import ConfigFileError, config_path, read_config
from orchestration.sensors import retraining
from assets.search import search_index, search_ranker, search_sessions
from assets.splits import training_splits
from assets.validation import validated_catalog, validated_events
from checks.export_checks import onnx_parity
from checks.search_checks import search_onnx_parity
from checks.validation_checks import validation_checks

all_assets = [raw_events, item_catalog, validated_catalog, validated_events, item_embeddings, training_splits, ranker, ranker_onnx, ranker_tensorrt,
              search_sessions, search_index, search_ranker, eval_report]



RESOURCES = {
    "store": ProjectStore, "source": RawDataSource, "policy": ValidationPolicy, "pseudonymiser": UserPseudonymiser,
    "compute": ComputeDevice, "mlflow_tracking": MlflowTracking, "engine": DataEngine,
}


def default_resources(root: str = ".", config: dict | None = None, path=None) -> dict:
    """Every resource, with the settings of the config file's `resources:` section (`path` names it in errors)."""
    settings = (config or {}).get("resources", {})
    unknown = sorted(set(settings) - set(RESOURCES))
    if unknown:
        raise ConfigFileError(path, f"unknown resource(s) {', '.join(map(repr, unknown))}; the resources are {', '.join(RESOURCES)}")
    resources = {}
    for name, cls in RESOURCES.items():
        values = settings.get(name, {}).get("config", {})
        extra = sorted(set(values) - set(cls.model_fields) - {"root"})
        if extra:
            raise ConfigFileError(path, f"resources.{name}: unknown setting(s) {', '.join(map(repr, extra))}; its settings are {', '.join(f for f in cls.model_fields if f != 'root')}")
        try:
            resources[name] = cls(**({"root": root} if name == "store" else {}), **values)
        except pydantic.ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ConfigFileError(path, f"resources.{name}: {problems}") from None
    return resources


def executor():
    """Dagster's multiprocess executor by default; on Kubernetes (REC_PIPELINE_EXECUTOR=k8s, see deploy/) each step is a Kubernetes
    Job, and the dagster-k8s tags of the GPU steps put those on GPU nodes. REC_PIPELINE_EXECUTOR=in_process runs every
    step in the run's own process: no interpreter start per step, which is most of a small data set's run time."""
    choice = os.environ.get("REC_PIPELINE_EXECUTOR", "multiprocess")
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if choice == "in_process":
        return dg.in_process_executor
    if choice != "multiprocess":
        raise ValueError(f"REC_PIPELINE_EXECUTOR={choice!r}: expected multiprocess, in_process or k8s")
    return dg.multiprocess_executor


def build_definitions(resources: dict, selection: dg.AssetSelection = dg.AssetSelection.all(), config: dict | None = None, path=None) -> dg.Definitions:
    """The `main` job materialises the selection (default: every asset), checks included; a failed blocking check
    stops what lies downstream of it. The config file's `ops:` settings are the job's defaults (the launchpad shows
    them, and sensor and schedule runs use them)."""
    selected = {key.to_user_string() for key in selection.resolve(all_assets)}
    unknown = sorted(set((config or {}).get("ops", {})) - {a.key.to_user_string() for a in all_assets})
    if unknown:
        raise ConfigFileError(path, f"unknown asset(s) under ops: {', '.join(map(repr, unknown))}")
    ops = {name: entry for name, entry in (config or {}).get("ops", {}).items() if name in selected}
    main_job = dg.define_asset_job(
        "main", selection=selection, description="Raw logs to the last asset.", config={"ops": ops} if ops else None,
    )
    new_raw_data, nightly = retraining(main_job)
    # The executor is the Definitions' own, so that what the UI launches ("Materialize all", one asset: Dagster's
    # implicit asset job) runs as `main` does. Set on `main` alone, UI runs used the multiprocess executor whatever
    # REC_PIPELINE_EXECUTOR said, on Kubernetes too.
    return dg.Definitions(
        assets=all_assets, asset_checks=[*validation_checks, onnx_parity, search_onnx_parity], jobs=[main_job], sensors=[new_raw_data],
        schedules=[nightly], resources=resources, executor=executor(),
    )


_config = read_config(config_path())
defs = build_definitions(default_resources(config=_config, path=config_path()), config=_config, path=config_path())


def describe(definitions: dg.Definitions) -> str:
    """One line per asset with its upstream assets and checks, in materialisation order."""
    graph = definitions.resolve_asset_graph()
    lines = []
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        upstream = ", ".join(k.to_user_string() for k in sorted(node.parent_keys)) or "-"
        checks = ", ".join(
            f"{check.name} ({'blocking' if graph.get_check_spec(check).blocking else 'non-blocking'})"
            for check in sorted(node.check_keys, key=lambda c: c.name)
        )
        pool = f"  pool: {node.pools and ', '.join(sorted(node.pools))}" if node.pools else ""
        lines.append(f"  {key.to_user_string()}  <- {upstream}" + (f"  checks: {checks}" if checks else "") + pool)
    return "Assets:\n" + "\n".join(lines)


if os.environ.get("DAGSTER_IS_DEFS_VALIDATION_CLI") == "1":
    # `dagster definitions validate` sets this; listing the graph makes its output show what was loaded.
    print(describe(defs), flush=True)
