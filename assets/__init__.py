"""Dagster assets for rec_pipeline: thin modules over the library, their resources and metadata helpers."""
