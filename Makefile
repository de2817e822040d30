# Two set-up commands on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test ui mlflow

# The environment: a venv with the project installed (editable) and its test tools; rebuilt when pyproject.toml changes.
$(BIN)/rec-pipeline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/rec-pipeline
	$(BIN)/rec-pipeline demo

test: $(BIN)/rec-pipeline
	$(BIN)/python -m pytest

ui: $(BIN)/rec-pipeline
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

mlflow: $(BIN)/rec-pipeline
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000
