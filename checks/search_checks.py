"""The blocking parity gate on the search ranker: if its ONNX graph and LightGBM disagree, the report does not run."""

import dagster as dg

from assets.resources import ProjectStore
from assets.search import search_ranker
from rec_pipeline.search import protocol as search_protocol
from rec_pipeline.search import ranker as search_ranker_files


@dg.asset_check(asset=search_ranker, name="search_onnx_parity", blocking=True,
                description="The search ranker's ONNX graph against LightGBM on 2,000 validation feature rows: max |diff| <= 1e-4.")
def search_onnx_parity(store: ProjectStore) -> dg.AssetCheckResult:
    folder = store.data_path(*search_protocol.RANKER_DIR)
    if not (folder / search_ranker_files.SETTINGS_FILE).exists():
        return dg.AssetCheckResult(passed=True, description="no search ranker was trained (no search sessions): nothing to check")
    try:
        worst, rows = search_ranker_files.parity(folder)
    except (FileNotFoundError, ValueError) as error:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, description=str(error))
    passed = worst <= search_ranker_files.PARITY_TOLERANCE
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.ERROR,
        description=f"max |ONNX Runtime - LightGBM| {worst:.2e} over {rows:,} rows ({'within' if passed else 'above'} {search_ranker_files.PARITY_TOLERANCE:.0e})",
        metadata={"max_abs_diff": worst, "rows": rows, "tolerance": search_ranker_files.PARITY_TOLERANCE},
    )
