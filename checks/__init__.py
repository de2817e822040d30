"""Asset checks and Great Expectations suites for rec_pipeline's assets."""
