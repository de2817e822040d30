"""The real-time service: `rec-pipeline serve` (see rec_pipeline.serving.app)."""
