"""Dagster wiring for rec_pipeline: thin asset modules over the library, and the Definitions."""
