# Two set-up commands on a fresh clone: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test ui mlflow serve redis

# The environment: a venv with the project installed (editable) and its test tools; rebuilt when pyproject.toml changes.
$(BIN)/rec-pipeline: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/rec-pipeline
	$(BIN)/rec-pipeline demo

# Debian packages the tests need, installed here when missing and this runs as root (as in CI): Chromium for the
# browser test, redis-server for the service's Redis store, wrk for bench.service, Java 17 for the Spark cluster test.
# Two pytest workers, a test file each at a time: much of the suite waits on processes (Dagster, DVC, the webserver),
# and on CI's 2 cores the whole suite took 18 min serially. --no-loadscope-reorder keeps tests/conftest.py's order
# (longest files first); xdist's own order (files with most tests first) left the one-test browser file to run alone last.
test: $(BIN)/rec-pipeline
	@missing=""; for p in chromium redis-server wrk; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
		command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
		[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null; } \
		|| echo "Missing$$missing and no root to install them: the tests that need them will skip."
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder

ui: $(BIN)/rec-pipeline
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/python -m dagster dev -w workspace.yaml

mlflow: $(BIN)/rec-pipeline
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --port 5000

# The real-time service on the trained demo (writes need REC_PIPELINE_TOKEN); `make redis` first for STORE=redis.
STORE ?= sqlite
serve: $(BIN)/rec-pipeline
	$(BIN)/rec-pipeline serve --store $(if $(filter redis,$(STORE)),redis://127.0.0.1:6379/0,$(STORE))

# Debian's redis-server on 127.0.0.1:6379, its files under data/redis/ (installed first when missing, as root).
redis:
	@command -v redis-server >/dev/null || apt-get install -y -qq --no-install-recommends redis-server >/dev/null
	mkdir -p data/redis && redis-server --bind 127.0.0.1 --port 6379 --dir $(CURDIR)/data/redis --appendonly yes --daemonize yes
