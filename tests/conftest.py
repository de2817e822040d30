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
