"""Shared fixtures: where the real data sets sit beside the repo (`../shared/data`)."""

import os
from pathlib import Path

import pytest

from rec_pipeline.sources.online_retail import shared_copy

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


# The longest files first, so that with two workers (`make test`: pytest -n 2 --dist loadfile) the last file to
# start is a short one. Measured on CI's 2 cores: the browser test, the DVC repro and the sensor tests take minutes each.
LONGEST_FIRST = [
    "test_ui.py", "test_dvc_repro.py", "test_pipeline.py", "test_protocol.py", "test_crash.py", "test_service.py",
    "test_sensor.py", "test_config_file.py", "test_evaluation.py",
]


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order
