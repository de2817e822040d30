"""Benchmarks: each prints one JSON line comparing rec_pipeline with the tool a team would otherwise use."""
