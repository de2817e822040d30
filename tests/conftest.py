"""Shared fixtures: where the real data sets sit beside the repo (`../shared/data`), and a checked encoder export."""

import os
import shutil
from pathlib import Path

import pytest

from rec_pipeline.sources.online_retail import shared_copy

# DVC binds its log handlers to sys.stdout and sys.stderr when first imported. Imported here, they bind to pytest's
# session-long capture; imported first inside a test that uses capsys, they bound to that test's stream, which closes
# with it, and every later DVC log line in that worker raised "I/O operation on closed file".
import dvc  # noqa: E402, F401

REQUIRE_REAL_DATA = "REC_PIPELINE_REQUIRE_REAL_DATA"


@pytest.fixture(scope="session")
def online_retail_path() -> Path:
    """The UCI Online Retail file; skips the test where it is absent, unless REC_PIPELINE_REQUIRE_REAL_DATA=1."""
    path = shared_copy(Path(__file__).resolve().parents[1])
    if not path.is_file():
        message = (
            f"Online Retail data not found at {path}: the repo is expected beside shared/ "
            f"(set {REQUIRE_REAL_DATA}=1 to make this a failure)"
        )
        if os.environ.get(REQUIRE_REAL_DATA) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def seed_encoder(tmp_path_factory):
    """`seed_encoder(models_dir)` copies the default encoder's ONNX export and its parity record into a project's
    models folder (where `item_embeddings` keeps its export), as a project that has run before would hold them.

    The export is made and checked against PyTorch once per test process (each xdist worker has its own): exporting
    and checking take about 16 s of CPU (the PyTorch model, the export, the parity probes) against 0.4 s for loading a
    checked export. The integration tests whose subject is not the export start from it; the export path is
    tests/test_encoders.py's subject, and the main job's test (tests/test_pipeline.py) exports in the run.
    """
    from rec_pipeline.encoders import EncoderConfig, TextEncoder

    checked = tmp_path_factory.mktemp("checked_encoder")
    TextEncoder(EncoderConfig(), onnx_dir=checked).load()

    def seed(models_dir: Path) -> None:
        models_dir.mkdir(parents=True, exist_ok=True)
        for path in checked.glob("encoder-*"):
            shutil.copy2(path, models_dir / path.name)

    return seed


# The longest files first, so that with two workers (`make test`: pytest -n 2 --dist loadfile) the last file to
# start is a short one. Measured on CI's 2 cores: the browser test, the DVC repro and the sensor tests take minutes each.
LONGEST_FIRST = [
    "test_engines.py", "test_ui.py", "test_dvc_repro.py", "test_pipeline.py", "test_protocol.py", "test_crash.py", "test_service.py",
    "test_sensor.py", "test_config_file.py", "test_evaluation.py",
]


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
