"""`ranker_onnx` and `ranker_tensorrt`: the ranker's scoring path exported for serving, and registered in MLflow."""

import json
from pathlib import Path

import dagster as dg

from assets.gpu import GPU_POOL, gpu_op_tags
from assets.metadata import consumed
from assets.ranker import ranker
from assets.resources import ComputeDevice, MlflowTracking, ProjectStore
from rec_pipeline.embeddings import ENCODER_SETTINGS_FILE
from rec_pipeline.ranker import export, live
from rec_pipeline.ranker.model import load_item_features, load_ranker
from rec_pipeline.storage import file_sha256
from rec_pipeline.registry import REGISTERED_MODEL


class RankerOnnxConfig(dg.Config):
    register_model: bool = True  # register the ONNX model (with the PyTorch weights) in the MLflow model registry
    registered_model: str = REGISTERED_MODEL


@dg.asset(group_name="serving", deps=[ranker], kinds={"onnx", "mlflow"})
def ranker_onnx(
    context: dg.AssetExecutionContext, config: RankerOnnxConfig, store: ProjectStore, mlflow_tracking: MlflowTracking
) -> dg.MaterializeResult:
    """The scoring path (history, candidates, season -> scores) as ONNX, refused unless ONNX Runtime matches PyTorch."""
    ranker_dir = store.data_path("models", "ranker")
    model, item_ids = load_ranker(ranker_dir)
    folder, scorer = export.write_bundle(model, item_ids, store.data_path("models", "ranker_onnx"))
    onnx_path = folder / export.ONNX_FILE
    # The registry only ever receives an export that matches; the blocking check re-verifies the files on disk.
    probes = export.parity_probes(scorer, export.onnx_session(onnx_path))
    worst = max(p.max_abs_diff for p in probes)
    if worst > export.PARITY_TOLERANCE:
        raise ValueError(f"{onnx_path}: ONNX Runtime differs from PyTorch by {worst:.2e} (> {export.PARITY_TOLERANCE:.0e})")
    export.record_parity(folder, probes)
    # The live service's graphs (new items without a retrain) pass the same kind of gate before registration.
    live.write_live(model, load_item_features(ranker_dir), store.data_path("embeddings", ENCODER_SETTINGS_FILE), folder)
    live_probes = live.check_live_parity(model, folder)

    registered = {}
    ranker_run = consumed(context, ranker).metadata.get("mlflow_run_id")
    if config.register_model:
        registered = _register(context, mlflow_tracking, store, folder, ranker_dir, ranker_run, config.registered_model)
    return dg.MaterializeResult(
        metadata={
            "onnx_sha256": file_sha256(onnx_path),
            "onnx_bytes": onnx_path.stat().st_size,
            "ranker_weights_sha256": file_sha256(ranker_dir / "model.safetensors"),
            "opset": export.OPSET,
            "items": len(item_ids),
            "parity_max_abs_diff": worst,
            "parity_probes": len(probes),
            "live_parity_max_abs_diff": max(p.max_abs_diff for p in live_probes),
            "live_parity_probes": len(live_probes),
            "ranker_mlflow_run_id": ranker_run or "none",
            **registered,
            "path": dg.MetadataValue.path(str(folder)),
        }
    )


def _register(context, mlflow_tracking, store, folder: Path, ranker_dir: Path, ranker_run: str | None, name: str) -> dict:
    """Log the ONNX flavour (signature, input example, the PyTorch weights as extra files) to the ranker's MLflow run
    and register it as a new version of `name`."""
    import numpy as np
    import onnx
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    mlflow = mlflow_tracking.start(store)
    signature = ModelSignature(
        inputs=Schema([
            TensorSpec(np.dtype("int64"), (-1, -1), "history"),
            TensorSpec(np.dtype("int64"), (-1,), "candidates"),
            TensorSpec(np.dtype("float32"), (-1, 3), "season"),
        ]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, -1), "scores")]),
    )
    example = {
        "history": np.array([[0, 1, 2]], dtype=np.int64),
        "candidates": np.array([3, 4, 5], dtype=np.int64),
        "season": np.array([[1.0, -0.6, 0.8]], dtype=np.float32),
    }
    extra = [ranker_dir / "model.safetensors", ranker_dir / "config.json", folder / export.ITEMS_FILE, folder / export.SERVING_FILE,
             *(folder / name for name in live.LIVE_FILES)]
    tags = {"dagster_run_id": context.run.run_id, "ranker_mlflow_run_id": ranker_run or "none", "onnx_sha256": file_sha256(folder / export.ONNX_FILE)}
    with mlflow.start_run(run_id=ranker_run) if ranker_run else mlflow.start_run(run_name=f"ranker-onnx-{context.run.run_id[:8]}") as run:
        info = mlflow.onnx.log_model(
            onnx.load(str(folder / export.ONNX_FILE)), name="ranker_onnx", signature=signature, input_example=example,
            registered_model_name=name, onnx_execution_providers=["CPUExecutionProvider"], save_as_external_data=False,
            pip_requirements=mlflow_tracking.onnx_requirements(), extra_files=[str(p) for p in extra], tags=tags,
        )
        run_id = run.info.run_id
    client = mlflow.MlflowClient()
    version = str(info.registered_model_version)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    return {"registered_model": name, "registered_version": int(version), "model_uri": f"models:/{name}/{version}", "mlflow_run_id": run_id}


@dg.asset(group_name="serving", deps=[ranker_onnx], pool=GPU_POOL, op_tags=gpu_op_tags(), kinds={"tensorrt"})
def ranker_tensorrt(store: ProjectStore, compute: ComputeDevice) -> dg.MaterializeResult:
    """An fp16 TensorRT engine built from the ONNX export and checked against PyTorch, where TensorRT and a GPU are
    present; elsewhere it materialises saying why it was not built, and the run goes on."""
    from rec_pipeline.ranker import tensorrt_engine

    missing = tensorrt_engine.unavailable_reason()
    if missing or compute.torch_device() != "cuda":
        reason = missing or f"compute device is {compute.describe()}"
        return dg.MaterializeResult(metadata={"status": f"not built: no GPU/TensorRT ({reason})", "built": False})
    model, _ = load_ranker(store.data_path("models", "ranker"))
    onnx_path = store.data_path("models", "ranker_onnx", export.ONNX_FILE)
    engine_path = store.data_path("models", "ranker_tensorrt", "ranker.plan")
    tensorrt_engine.build_engine(onnx_path, engine_path, model.config)
    report = tensorrt_engine.compare_with_torch(engine_path, export.ServingScorer(model))
    if not report.passed:
        raise ValueError(f"{engine_path}: the fp16 engine disagrees with PyTorch: {json.dumps(report.__dict__)}")
    return dg.MaterializeResult(
        metadata={
            "status": "built",
            "built": True,
            "engine_sha256": file_sha256(engine_path),
            "max_abs_diff": report.max_abs_diff,
            "top20_agreement": report.top20_agreement,
            "tensorrt_version": report.tensorrt_version,
            "path": dg.MetadataValue.path(str(engine_path)),
        }
    )
