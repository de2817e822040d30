"""The Dagster UI in a real browser, used as a person would: dagster-webserver on loopback over a copy of the project
with the small data set; Playwright drives Debian's Chromium to the asset graph, clicks "Materialize all", follows the
run to success, and finds the evaluation report's Markdown on the `eval_report` asset page. Screenshots of each page
go to `.test-artifacts/ui/`."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest
import yaml

from tests.test_dvc_repro import REPO, small_copy_of_repo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = REPO / ".test-artifacts" / "ui"
# The flags this machine's Chromium needs without a network: no background traffic that would be refused.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT_S = 600


def require_browser():
    if Path(CHROMIUM).exists():
        return
    reason = f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium package when it runs as root"
    if os.environ.get("REC_PIPELINE_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (REC_PIPELINE_REQUIRE_BROWSER=1 makes this a failure)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"dagster-webserver exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")


@pytest.fixture
def webserver(tmp_path, monkeypatch, seed_encoder):
    """dagster-webserver on a free loopback port, serving a copy of the project from its own workspace.yaml."""
    require_browser()
    root = small_copy_of_repo(tmp_path / "repo", seed_encoder)
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((REPO / ".dagster_home" / "dagster.yaml").read_text())
    # Without the daemon (and so without the sensor, which would launch a run of its own), a run launched from the UI
    # starts at once instead of waiting in the daemon's queue.
    config["run_coordinator"] = {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the test reads the same instance
    port = free_port()
    # One process per run rather than per step (the Definitions' executor, which UI runs use): measured alone, this
    # test took 69 s, against 205 s with a process per step.
    env = {**os.environ, "REC_PIPELINE_EXECUTOR": "in_process", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    log = (tmp_path / "webserver.log").open("w")
    process = subprocess.Popen(
        # As `dagster dev` starts it: `python -m`, so the project root is on sys.path for the instance's run launcher.
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/server_info", process)
        yield f"http://127.0.0.1:{port}", home, root
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def dismiss_welcome(page) -> None:
    """The first visit shows a "Join the Dagster community" dialog; a person would skip it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_role("button", name="Skip").click(timeout=5000)
    except PlaywrightTimeout:  # no dialog this time: nothing to dismiss
        pass


def test_materialize_all_from_the_asset_graph_and_read_the_report(webserver):
    from playwright.sync_api import expect, sync_playwright

    url, home, root = webserver
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)

        page.goto(f"{url}/asset-groups")
        dismiss_welcome(page)
        # The graph opens on the asset groups, raw data to report.
        for group in ("ingest", "validation", "embeddings", "training", "serving", "evaluation"):
            expect(page.get_by_text(group, exact=True).first).to_be_visible()
        page.screenshot(path=SCREENSHOTS / "1-asset-graph.png")

        page.get_by_role("button", name="Materialize all").click()
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 60
            while not instance.get_runs() and time.monotonic() < deadline:
                time.sleep(1)
            [run] = instance.get_runs()
            page.goto(f"{url}/runs/{run.run_id}")
            page.screenshot(path=SCREENSHOTS / "2-run-started.png")
            # A person leaves the run page open while it runs; here the page is left (Chromium rendering the live log
            # took CPU from the run itself on 2 cores), the instance is watched, and the run page is opened again,
            # where its status must read Success.
            page.goto("about:blank")
            deadline = time.monotonic() + RUN_TIMEOUT_S
            while not instance.get_run_by_id(run.run_id).is_finished and time.monotonic() < deadline:
                time.sleep(2)
            page.goto(f"{url}/runs/{run.run_id}")
            expect(page.get_by_text("Success", exact=True).first).to_be_visible()
            page.screenshot(path=SCREENSHOTS / "3-run-succeeded.png")
            run = instance.get_run_by_id(run.run_id)
            assert run.status == dg.DagsterRunStatus.SUCCESS
            materialized = {
                key.to_user_string() for key in instance.get_asset_keys() if instance.get_latest_materialization_event(key) is not None
            }
        assert {"raw_events", "validated_events", "item_embeddings", "training_splits", "ranker", "ranker_onnx", "eval_report"} <= materialized

        page.goto(f"{url}/assets/eval_report")
        dismiss_welcome(page)
        expect(page.get_by_text("summary", exact=True).first).to_be_visible()
        page.screenshot(path=SCREENSHOTS / "4-eval-report-asset.png", full_page=True)
        # The metadata table links the Markdown summary; opened, it shows the figures and the gate's decision.
        page.get_by_text("[Show Markdown]").first.click()
        expect(page.get_by_text("Champion/challenger").first).to_be_visible()
        expect(page.get_by_text("no champion yet").first).to_be_visible()
        page.wait_for_timeout(1000)  # the dialog fades in
        page.screenshot(path=SCREENSHOTS / "5-eval-report-markdown.png", full_page=True)
        browser.close()
    assert (root / "data" / "reports" / "eval_report" / "report.html").exists()
