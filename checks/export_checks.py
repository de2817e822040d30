"""The blocking parity gate on the serving export: if ONNX Runtime and PyTorch disagree, nothing downstream runs."""


import dagster as dg

from assets.export import ranker_onnx
from assets.metadata import markdown_table
from assets.resources import ProjectStore
from rec_pipeline.ranker import export
from rec_pipeline.ranker.model import load_ranker


@dg.asset_check(asset=ranker_onnx, name="onnx_parity", blocking=True,
                description="ONNX Runtime against PyTorch on 1/64/1,000 candidates x empty/short/full histories: max |diff| <= 1e-5.")
def onnx_parity(store: ProjectStore) -> dg.AssetCheckResult:
    model, _ = load_ranker(store.data_path("models", "ranker"))
    onnx_path = store.data_path("models", "ranker_onnx", export.ONNX_FILE)
    try:
        probes = export.parity_probes(export.ServingScorer(model), export.onnx_session(onnx_path))
    except (FileNotFoundError, ValueError) as error:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(error))
    worst = max(p.max_abs_diff for p in probes)
    passed = worst <= export.PARITY_TOLERANCE
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"max |ONNX Runtime - PyTorch| {worst:.2e} over {len(probes)} shapes ({'within' if passed else 'above'} {export.PARITY_TOLERANCE:.0e})",
        metadata={
            "max_abs_diff": worst,
            "tolerance": export.PARITY_TOLERANCE,
            "probes": dg.MetadataValue.md(markdown_table(
                [{**p.__dict__, "max_abs_diff": f"{p.max_abs_diff:.2e}"} for p in probes],
                ["batch", "history", "history_items", "candidates", "max_abs_diff"],
            )),
        },
    )

