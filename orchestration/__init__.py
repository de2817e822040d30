"""The layer above assets/ and checks/: the Definitions, the retraining sensor and schedule, and the programs that
drive them (`python -m orchestration.run`, `python -m orchestration.lineage`)."""
