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

# The browser test drives Debian's Chromium: installed here when missing and this runs as root (as in CI).
# Two pytest workers, a test file each at a time: much of the suite waits on processes (Dagster, DVC, the webserver),
# and on CI's 2 cores the whole suite took 18 min serially.
test: $(BIN)/rec-pipeline
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null; } \
		|| echo "No Chromium and no root to install it: the browser test will skip."
	$(BIN)/python -m pytest -n 2 --dist loadfile

ui: $(BIN)/rec-pipeline
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/python -m dagster dev -w workspace.yaml

mlflow: $(BIN)/rec-pipeline
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000
