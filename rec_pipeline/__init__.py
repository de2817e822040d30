"""rec_pipeline: e-commerce search and recommendation, from raw logs to a served model.

The library never imports dagster; the Dagster wiring lives in the repo's `assets/` and `checks/`.
"""

__version__ = "0.1.0"
