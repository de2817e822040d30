"""The real-time service over real sockets: `rec-pipeline serve` in its own process on a project the main job trained,
with live histories in SQLite and in Redis, events durable in the raw logs, new items without a retrain, a SIGKILL
under load and a hot swap under load."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from orchestration.definitions import build_definitions, default_resources
from orchestration.run import every_day
from rec_pipeline.generate import GeneratorConfig, generate
from rec_pipeline.privacy import PSEUDONYM
from rec_pipeline.registry import CHAMPION, REGISTERED_MODEL
from rec_pipeline.sources.formats import read_source
from rec_pipeline.validation import ValidationSettings, validate_events
from rec_pipeline.versioning import current_md5, init_dvc_repo

REPO = Path(__file__).resolve().parents[1]
TOKEN = "test-token"
REQUIRE = "REC_PIPELINE_REQUIRE_SERVICES"


@pytest.fixture(scope="module")
def project(tmp_path_factory, seed_encoder):
    """A project the main job materialised on the small generated data: a registered model, splits, a catalog."""
    base = tmp_path_factory.mktemp("service")
    root = base / "project"
    root.mkdir()
    init_dvc_repo(root, base / "dvc_remote")
    generate(root / "data" / "raw", GeneratorConfig.small())
    seed_encoder(root / "data" / "models")
    home = root / ".dagster_home"
    home.mkdir()
    shutil.copy(REPO / ".dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        mp.delenv("REC_PIPELINE_SALT", raising=False)
        with dg.DagsterInstance.get() as instance:
            selection = dg.AssetSelection.all() - dg.AssetSelection.assets("eval_report", "ranker_tensorrt")
            resources = default_resources(str(root))
            job = build_definitions(resources, selection).resolve_job_def("main")
            assert job.execute_in_process(instance=instance, tags=every_day(instance, job, resources["store"], resources["source"])).success
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`rec-pipeline serve` in a new process group, on a free port."""

    def __init__(self, root: Path, *args: str, workers: int = 1):
        self.root, self.port = root, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "REC_PIPELINE_TOKEN": TOKEN}
        env.pop("REC_PIPELINE_SALT", None)
        self.log = open(root / f"serve-{self.port}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rec_pipeline.cli", "serve", "--port", str(self.port), "--workers", str(workers), *args],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited: {(root / f'serve-{self.port}.log').read_text()[-3000:]}"
            try:
                if call(self.url + "/readyz", method="GET")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("the service never became ready")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def post(self, path: str, body, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, dict]:
        return call(self.url + path, body, token, raw)


def call(url: str, body=None, token: str | None = None, raw: bytes | None = None, method: str = "POST") -> tuple[int, dict]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=data, headers=headers, method=method if data is not None or method == "GET" else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
            return response.status, (json.loads(text) if text.startswith(("{", "[")) else {"text": text})
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read().decode() or "{}")


def redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server not installed (make test installs Debian's redis-server when run as root)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen([redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    process.terminate()
    process.wait(10)


def heaviest_user(root: Path) -> str:
    """A raw user id with a long history (the raw logs hold raw ids; the service pseudonymises them)."""
    events = read_source("events", root / "data" / "raw" / "events", "canonical").frame
    clicks = events[events["event_type"].isin(["click", "purchase", "add_to_cart"])]
    return str(clicks["user_id"].value_counts().index[0])


def event(event_id: str, user: str, item: str, event_type: str = "click", **extra) -> dict:
    ts = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"event_id": event_id, "ts": ts, "user_id": user, "session_id": f"s-{event_id}", "event_type": event_type, "item_id": item, **extra}


def live_lines(root: Path) -> list[dict]:
    lines = []
    for path in sorted((root / "data" / "raw" / "events").glob("live-*.jsonl")):
        for line in path.read_text().splitlines():
            lines.append(json.loads(line))
    return lines


def cold_items(root: Path) -> set[str]:
    """Items the shipped ranker has no ID embedding for (no interaction before its test window)."""
    from safetensors.numpy import load_file

    folder = root / "data" / "models" / "ranker"
    warm = load_file(str(folder / "model.safetensors"))["warm"][1:]
    items = json.loads((folder / "items.json").read_text())
    return {item for item, is_warm in zip(items, warm) if not is_warm}


def copy_of(root: Path, item_id: str, new_id: str) -> dict:
    catalog = pd.read_parquet(root / "data" / "validated" / "catalog.parquet").set_index("item_id")
    row = catalog.loc[item_id]
    return {"item_id": new_id, "title": row.title, "description": row.description, "category": row.category,
            "brand": row.brand, "price": float(row.price)}


def clicks_and_new_items(service: Service, root: Path, tag: str) -> None:
    """What the issue asks of either store: a click changes the next answer; a new item is recommended, no retrain."""
    user = heaviest_user(root)
    status, before = service.post("/recommend", {"user_id": user, "k": 10})
    assert status == 200 and before["fallback"] is None and before["history_length"] > 0
    top = before["items"][0]["item_id"]

    status, answer = service.post("/events", event(f"{tag}-click-1", user, top))
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    status, after = service.post("/recommend", {"user_id": user, "k": 10})
    assert after["history_length"] == before["history_length"] + 1
    assert top not in [i["item_id"] for i in after["items"]]  # now seen, so no longer offered
    # A retried event is acknowledged, not counted again.
    assert service.post("/events", event(f"{tag}-click-1", user, top)) == (200, {"accepted": 0, "duplicates": 1})

    # A new item written like the best-ranked cold item of this user's list (a cold item is represented by its text and
    # side features alone, exactly as a new one is): recommendable within a second, without a retrain, right beside it.
    status, wide = service.post("/recommend", {"user_id": user, "k": 100})
    cold = cold_items(root)
    [(rank, match)] = [(r, i) for r, i in enumerate(wide["items"]) if i["item_id"] in cold][:1]
    new_id = f"{tag}-new-item"
    started = time.monotonic()
    status, added = service.post("/items", copy_of(root, match["item_id"], new_id))
    assert status == 200, added
    status, fresh = service.post("/recommend", {"user_id": user, "k": rank + 2, "titles": True})
    assert time.monotonic() - started < 1.0
    scores = {i["item_id"]: i["score"] for i in fresh["items"]}
    assert new_id in scores and abs(scores[new_id] - scores[match["item_id"]]) < 1e-4
    assert all(i["title"] for i in fresh["items"])
    # And it can be clicked like any other item.
    assert service.post("/events", event(f"{tag}-click-2", user, new_id))[0] == 200


def test_sqlite_store_clicks_new_items_bad_input_and_the_raw_logs(project):
    raw_version = current_md5(project / "data" / "raw" / "events", project)
    service = Service(project)
    try:
        clicks_and_new_items(service, project, "sqlite")

        # A user with no history gets the new-user fallback, and says so.
        status, answer = service.post("/recommend", {"user_id": "someone-new", "k": 5})
        assert status == 200 and answer["fallback"] == "new_user" and len(answer["items"]) == 5
        status, answer = service.post("/recommend", {"items": ["not-an-item"]})
        assert status == 422 and "not-an-item" in answer["detail"]

        # Writes need the token; bad input gets a 4xx naming what is wrong, never a traceback.
        user = heaviest_user(project)
        assert service.post("/events", event("t-1", user, "x"), token=None)[0] == 401
        assert service.post("/events", event("t-1", user, "x"), token="wrong")[0] == 401
        assert service.post("/items", {"item_id": "a", "title": "b"}, token=None)[0] == 401
        assert service.post("/reload", {}, token=None)[0] == 401
        status, answer = service.post("/events", None, raw=b'{"event_id": "x", ')
        assert status == 400 and "malformed JSON" in answer["detail"]
        status, answer = service.post("/recommend", None, raw=b'{"user_id": ')
        assert status == 422
        status, answer = service.post("/recommend", {"user_id": user, "k": 5000})
        assert status == 422 and answer["errors"][0]["loc"] == ["body", "k"]
        status, answer = service.post("/recommend", {"k": 5})
        assert status == 422 and "exactly one of user_id and items" in json.dumps(answer)
        status, answer = service.post("/events", None, raw=b'{"events": [' + b'{"a": 1},' * 200_000 + b'{}]}')
        assert status == 413 and "bytes" in answer["detail"]
        status, answer = service.post("/events", {"events": [event(f"b{i}", user, "x") for i in range(1001)]})
        assert status == 413 and "at most 1000" in answer["detail"]
        # A batch with one bad event is refused whole, naming the event and the field.
        batch = [event("good-1", user, heaviest_item(project)), event("bad-1", user, heaviest_item(project), ts="2100-01-01T00:00:00Z"),
                 {**event("bad-2", user, "i000001"), "event_type": "clack"}]
        status, answer = service.post("/events", {"events": batch})
        assert status == 422
        assert [(e["loc"], e["rule"]) for e in answer["errors"]] == [(["body", "events", 1], "ts_out_of_window"), (["body", "events", 2], "unknown_event_type")]
        assert "good-1" not in {e["event_id"] for e in live_lines(project)}
        status, answer = service.post("/events", {**event("typo-1", user, heaviest_item(project)), "itemid": "i000001"})
        assert status == 422 and answer["errors"][0]["loc"] == ["body", "events", 0, "itemid"]
        status, answer = service.post("/items", {"item_id": "no-title", "title": ""})
        assert status == 422 and answer["errors"][0]["rule"] == "empty_title"

        # Events land in the raw logs in the canonical schema, pseudonymised, and pass the pipeline's own rules.
        lines = [e for e in live_lines(project) if e["event_id"].startswith("sqlite-")]
        assert [e["event_id"] for e in lines] == ["sqlite-click-1", "sqlite-click-2"]
        assert all(PSEUDONYM.fullmatch(e["user_id"]) for e in lines) and user not in json.dumps(lines)
        live = read_source("events", project / "data" / "raw" / "events", "canonical").frame
        catalog = read_source("catalog", project / "data" / "raw" / "catalog", "canonical").frame
        assert "sqlite-new-item" in set(catalog["item_id"])
        result = validate_events(live[live["event_id"].str.startswith("sqlite-")], catalog["item_id"], ValidationSettings())
        assert result.rows_quarantined == 0 and result.rows_valid == 2
        # A new raw data version: what the new_raw_data sensor retrains on.
        assert current_md5(project / "data" / "raw" / "events", project) != raw_version

        # Prometheus metrics, the OpenAPI page, health.
        status, text = call(service.url + "/metrics", method="GET")
        assert 'rec_events_total{outcome="accepted"} 2.0' in text["text"]
        assert 'rec_model_version_info{version="models:/rec_pipeline_ranker/1"} 1.0' in text["text"]
        assert "rec_request_seconds_bucket" in text["text"]
        status, spec = call(service.url + "/openapi.json", method="GET")
        assert {"/recommend", "/events", "/items", "/reload", "/healthz", "/readyz", "/metrics"} <= set(spec["paths"])
        assert call(service.url + "/healthz", method="GET") == (200, {"status": "ok"})
    finally:
        service.stop()


def test_search_over_http_personal_new_items_found_at_once_and_bad_queries_refused(project):
    sessions = pd.read_parquet(project / "data" / "splits" / "search_sessions.parquet")
    query = sessions["query"].value_counts().index[0]
    catalog = set(pd.read_parquet(project / "data" / "validated" / "catalog.parquet")["item_id"])
    service = Service(project)
    try:
        status, answer = service.post("/search", {"query": query, "k": 10}, token=None)
        assert status == 200 and answer["query"] == query and answer["history_length"] == 0
        assert 0 < len(answer["items"]) <= 10 and {i["item_id"] for i in answer["items"]} <= catalog
        assert [i["score"] for i in answer["items"]] == sorted((i["score"] for i in answer["items"]), reverse=True)
        status, personal = service.post("/search", {"query": query, "user_id": heaviest_user(project), "k": 10}, token=None)
        assert status == 200 and personal["history_length"] > 0

        # An item posted to /items is searchable at once, by its Chinese title as by its Latin words.
        item = {"item_id": "search-new-item", "title": "手工香薰蜡烛 Zanzibarite lantern", "description": "A lantern of driftwood",
                "category": "candles & home fragrance", "brand": "Nova", "price": 12.5}
        assert service.post("/items", item)[0] == 200
        for words in ("香薰蜡烛", "zanzibarite"):
            status, answer = service.post("/search", {"query": words, "k": 10}, token=None)
            assert status == 200 and "search-new-item" in [i["item_id"] for i in answer["items"]], (words, answer)

        # Shoppers' words: an e-mail address or a phone number never comes back, nor reaches the logs.
        status, answer = service.post("/search", {"query": "tea towel for bob.smith@example.com 07700 900123"}, token=None)
        assert status == 200 and answer["query"] == "tea towel for <email> <number>"

        # Bad queries get a 422 naming the field, with the reason.
        for body, reason in (({"query": ""}, "empty"), ({"query": " \t "}, "empty"), ({"query": "a" * 10_000}, "at most 500"),
                             ({"query": "tea\u0000towel"}, "control")):
            status, answer = service.post("/search", body, token=None)
            assert status == 422 and answer["errors"][0]["loc"] == ["body", "query"] and reason in answer["detail"], answer
        status, answer = service.post("/search", None, token=None, raw=b'{"query": "t\xe9 towel"}')  # latin-1, not UTF-8
        assert status == 422 and "unicode" in json.dumps(answer).lower(), answer
        status, answer = service.post("/search", {"k": 3}, token=None)
        assert status == 422 and answer["errors"][0]["loc"] == ["body", "query"]
        status, answer = service.post("/search", {"query": "towel", "k": 5000}, token=None)
        assert status == 422 and answer["errors"][0]["loc"] == ["body", "k"]
        status, answer = service.post("/search", {"query": "towel", "sort": "price"}, token=None)
        assert status == 422 and answer["errors"][0]["loc"] == ["body", "sort"]
        status, spec = call(service.url + "/openapi.json", method="GET")
        assert "/search" in spec["paths"]
    finally:
        service.stop()
    assert "bob.smith@example.com" not in (project / f"serve-{service.port}.log").read_text()


def heaviest_item(root: Path) -> str:
    return str(pd.read_parquet(root / "data" / "validated" / "catalog.parquet")["item_id"].iloc[0])


def test_redis_store_shares_histories_and_items_between_replicas(project, redis_url):
    first = Service(project, "--store", redis_url)
    second = Service(project, "--store", redis_url)
    try:
        clicks_and_new_items(first, project, "redis")
        # The other replica sees the click and the new item through Redis.
        user = heaviest_user(project)
        a = first.post("/recommend", {"user_id": user, "k": 20})[1]
        time.sleep(0.3)  # item_sync_seconds
        b = second.post("/recommend", {"user_id": user, "k": 20})[1]
        assert a["items"] == b["items"] and a["history_length"] == b["history_length"]
    finally:
        first.stop()
        second.stop()


def test_sigkill_under_load_loses_no_acknowledged_event_and_duplicates_none(project):
    service = Service(project, workers=2)
    user_ids = [f"load-user-{i}" for i in range(20)]
    item = heaviest_item(project)
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def post_events(worker: int) -> None:
        n = 0
        while not stop.is_set():
            batch = [event(f"kill-{worker}-{n}-{j}", user_ids[(n + j) % 20], item) for j in range(5)]
            n += 1
            try:
                status, answer = service.post("/events", {"events": batch})
            except OSError:
                continue  # the connection died with the service: not acknowledged
            if status == 200:
                with lock:
                    acknowledged.extend(e["event_id"] for e in batch)

    threads = [threading.Thread(target=post_events, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    time.sleep(4)
    service.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) > 50, "too little load to mean anything"
    logged = [e["event_id"] for e in live_lines(project) if e["event_id"].startswith("kill-")]
    assert len(logged) == len(set(logged)), "an event was written twice"
    assert set(acknowledged) <= set(logged), f"{len(set(acknowledged) - set(logged))} acknowledged events are missing"


def test_moving_the_champion_alias_under_load_swaps_without_a_failed_request(project):
    import mlflow

    service = Service(project, "--watch-seconds", "0.5")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    user = heaviest_user(project)
    answers, failures, stop = [], [], threading.Event()

    def ask() -> None:
        while not stop.is_set():
            try:
                status, answer = service.post("/recommend", {"user_id": user, "k": 10})
            except OSError as error:
                failures.append(repr(error))
                continue
            if status != 200:
                failures.append((status, answer))
            else:
                answers.append(answer["model_version"])

    threads = [threading.Thread(target=ask) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(1)
        first = client.get_model_version(REGISTERED_MODEL, "1")
        second = client.create_model_version(REGISTERED_MODEL, first.source, first.run_id)
        client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, second.version)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not answers or answers[-1] != f"models:/{REGISTERED_MODEL}/{second.version}"):
            time.sleep(0.2)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads:
            t.join()
        service.stop()
    assert not failures
    assert answers[0] == f"models:/{REGISTERED_MODEL}/1" and answers[-1] == f"models:/{REGISTERED_MODEL}/{second.version}"
