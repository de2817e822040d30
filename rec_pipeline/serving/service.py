"""The recommendation service without its HTTP layer: the served model version, live histories, accepted events and
items added while serving. `rec_pipeline.serving.app` puts it behind FastAPI; tests and the benchmark drive that.

- Model: the registry's `champion` (the newest version where none is set), as the ONNX graphs of
  `rec_pipeline.ranker.live`. A watcher thread checks the alias; a new version is loaded beside the one serving and
  swapped in with one reference assignment, so a request runs wholly on the old version or wholly on the new.
- Histories: the trained interactions (data/splits/interactions.parquet) seed the store once per file version; each
  accepted positive event is added to it. User ids are pseudonymised here, at the edge, with the project's salt.
- Events: checked by the pipeline's own validation rules (a batch is accepted whole or not at all), written durably
  to the raw logs, then added to the store, before the answer.
- Items: checked by the catalog rules, encoded by the packaged text encoder and the model's item encoder, written to
  the raw catalog and the store; every worker and replica picks them up from the store within `item_sync_seconds`.
"""

from __future__ import annotations

import json
import os
import logging
import math
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rec_pipeline.embeddings import item_texts
from rec_pipeline.privacy import SALT_FILE, desensitise_queries, load_salt, pseudonym_of, pseudonymise
from rec_pipeline.ranker.live import ItemTables, LiveModel
from rec_pipeline.ranker.model import season_features
from rec_pipeline.registry import REGISTERED_MODEL, champion_version, client_for, download_version, newest_version
from rec_pipeline.schema import CATALOG_COLUMNS, EVENT_COLUMNS
from rec_pipeline.search.engine import QUERY_CACHE_SIZE
from rec_pipeline.serving.eventlog import RawLog
from rec_pipeline.serving.store import HistoryStore, open_store
from rec_pipeline.storage import file_sha256
from rec_pipeline.validation import ValidationSettings, validate_catalog, validate_events

log = logging.getLogger("rec_pipeline.serving")


@dataclass(frozen=True)
class ServiceConfig:
    data_dir: Path = Path("data")
    tracking_uri: str = "sqlite:///mlflow.db"
    model: str = REGISTERED_MODEL
    store: str = "sqlite"  # sqlite (data/serving/live.sqlite), sqlite:///PATH or redis://HOST:PORT/DB
    token_env: str = "REC_PIPELINE_TOKEN"  # the bearer token for writes is read from this variable
    open_recommend: bool = True  # False: /recommend needs the token too
    max_k: int = 100
    max_batch: int = 1000  # events or items in one request
    max_body_bytes: int = 1_000_000
    threads: int = 1  # ONNX Runtime threads per worker: one request is too small to split
    watch_seconds: float = 5.0  # how often the champion alias is checked
    item_sync_seconds: float = 0.2  # how stale a worker's view of items added elsewhere may be
    query_cache: int = QUERY_CACHE_SIZE  # query vectors kept per worker (0: encode every query; bench.search measures both)


class RejectedInput(ValueError):
    """A request the service refuses, with the HTTP status and what is wrong, field by field."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors or []


@dataclass
class Served:
    """One model version with the item side as served: trained items, then items added live. Never mutated once
    published: a change builds a new one."""

    version: str
    model: LiveModel
    tables: ItemTables
    rows: dict[str, int]  # item id -> table row
    item_seq: int = 0  # the store's last item applied


@dataclass
class Recommendation:
    items: list[dict]
    fallback: str | None
    history_length: int
    version: str


class RecommendationService:
    def __init__(self, config: ServiceConfig, store: HistoryStore | None = None):
        self.config = config
        data = Path(config.data_dir)
        self.salt = load_salt(data / SALT_FILE)
        self._salt_key = self.salt.encode("utf-8")
        summary_path = data / "splits" / "summary.json"
        if not summary_path.exists():
            raise FileNotFoundError(f"{summary_path}: no training splits (run the README's first command first)")
        self.positive_events = set(json.loads(summary_path.read_text())["positive_events"])
        self.store = store or open_store(config.store, data)
        self._serving_dir = data / "serving"
        self._serving_dir.mkdir(parents=True, exist_ok=True)
        self.events_log = RawLog(data / "raw" / "events", EVENT_COLUMNS, "ts")
        self.catalog_log = RawLog(data / "raw" / "catalog", CATALOG_COLUMNS, "first_seen")
        self.catalog = self._read_catalog(data / "validated" / "catalog.parquet")
        self._seed_histories(data / "splits" / "interactions.parquet")
        self._swap_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._last_sync = 0.0
        self._text_encoder = None
        self._season_day, self._season = None, None
        self.served = self._load(self._champion())
        self.text_encoder(self.served.model).load()  # now, so that the first POST /items answers within a second
        self.search_engine, self.search_unavailable, self._search_seq = None, None, 0
        self._open_search(data)
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- start-up ---------------------------------------------------------------------------------------------------

    @staticmethod
    def _read_catalog(path: Path) -> dict[str, dict]:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no validated catalog (run the README's first command first)")
        frame = pd.read_parquet(path).drop_duplicates("item_id").set_index("item_id")
        return {str(i): {"title": r.title, "category": getattr(r, "category", None)} for i, r in frame.iterrows()}

    def _seed_histories(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no interactions (run the README's first command first)")
        key = file_sha256(path)
        frame = pd.read_parquet(path, columns=["user_id", "item_id", "ts"])
        stamps = pd.to_datetime(frame["ts"], utc=True).astype("int64") / 1e9
        rows = zip(frame["user_id"].astype(str), frame["item_id"].astype(str), stamps.tolist())
        if self.store.seed(key, rows):
            log.info("seeded %s with %d interactions from %s", self.store.describe(), len(frame), path)

    def _champion(self) -> str:
        client = client_for(self.config.tracking_uri)
        return champion_version(client, self.config.model) or newest_version(client, self.config.model)

    def _load(self, version: str) -> Served:
        # Downloaded under data/serving/ and removed once loaded: the sessions and tables then live in memory.
        download = Path(tempfile.mkdtemp(prefix="model-", dir=self._serving_dir))
        try:
            folder, item_ids = download_version(self.config.tracking_uri, self.config.model, version, download)
            model = LiveModel(folder, item_ids, self.config.threads)
        finally:
            shutil.rmtree(download, ignore_errors=True)
        served = Served(f"models:/{self.config.model}/{version}", model, model.tables, {i: r + 1 for r, i in enumerate(item_ids)})
        return self._with_store_items(served, 0)

    def _open_search(self, data: Path) -> None:
        from rec_pipeline.search.engine import SearchEngine

        try:
            # Each process searches its own copy of the lexical index, so that items it adds never contend for
            # tantivy's single writer with another worker's; the copy is removed at stop.
            self._search_copy = Path(tempfile.mkdtemp(prefix=f"search-{os.getpid()}-", dir=self._serving_dir))
            self.search_engine = SearchEngine.open(data, self.text_encoder(self.served.model), self._search_copy / "lexical", self.config.threads,
                                                   self.config.query_cache)
        except FileNotFoundError as error:  # a project materialised before search, or with no search logs
            self.search_unavailable = f"search is not available: {error}"
            log.warning(self.search_unavailable)
            return
        self._sync_search()

    def _sync_search(self) -> None:
        seq, added = self.store.items_since(self._search_seq)
        if not added:
            return
        added = list({item_id: (item_id, row, vector) for item_id, row, vector in added}.values())
        frame = pd.DataFrame([row for _, row, _ in added])
        texts = [row.get("text") or row.get("title") or "" for _, row, _ in added]
        self.search_engine.add_items([i for i, _, _ in added], texts, np.stack([v for _, _, v in added]), frame)
        self._search_seq = seq

    # -- the champion watcher -------------------------------------------------------------------------------------

    def start_watching(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="champion-watcher", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if getattr(self, "_search_copy", None) is not None:
            shutil.rmtree(self._search_copy, ignore_errors=True)
        self.events_log.close()
        self.catalog_log.close()

    def _watch(self) -> None:
        while not self._stop.wait(self.config.watch_seconds):
            try:
                self.reload()
            except Exception as error:  # a registry hiccup must not stop the watcher; the version serving stays
                log.warning("champion check failed, still serving %s: %s", self.served.version, error)

    def reload(self) -> dict:
        """Load the champion if it moved; the version serving answers every request until the new one is ready."""
        with self._swap_lock:
            version = self._champion()
            current = self.served.version
            if current.rsplit("/", 1)[-1] == str(version):
                return {"version": current, "swapped": False}
            fresh = self._load(version)
            self.served = fresh  # one reference assignment: requests hold the old object or the new, never a mix
            log.info("swapped %s -> %s", current, fresh.version)
            return {"version": fresh.version, "swapped": True, "previous": current}

    # -- items added while serving ---------------------------------------------------------------------------------

    def _with_store_items(self, served: Served, since: int) -> Served:
        seq, added = self.store.items_since(since)
        if not added:
            return served
        # An item posted twice since the last sync (from two workers, say) counts once, as its latest row.
        added = list({item_id: (item_id, row, vector) for item_id, row, vector in added}.values())
        tables, rows = served.tables, dict(served.rows)
        texts = np.stack([vector for _, _, vector in added])
        frame = pd.DataFrame([row for _, row, _ in added])
        ids = [item_id for item_id, _, _ in added]
        id_part = np.stack([tables.id_part[rows[i]] if i in rows else np.zeros(tables.table.shape[1], np.float32) for i in ids])
        rep, unit, bias = served.model.encode(texts, frame, id_part)
        table, units, biases, id_parts, item_ids = tables.table.copy(), tables.unit.copy(), tables.bias.copy(), tables.id_part, list(tables.item_ids)
        new_rows = []
        for n, item_id in enumerate(ids):
            if item_id in rows:  # a changed item keeps its row and what the model learned of it (id_part)
                r = rows[item_id]
                table[r], units[r], biases[r] = rep[n], unit[n], bias[n]
            else:
                rows[item_id] = len(item_ids) + 1 + len(new_rows)
                new_rows.append(n)
        if new_rows:
            table, units, biases = (np.vstack([a, b[new_rows]]) for a, b in ((table, rep), (units, unit), (biases, bias)))
            id_parts = np.vstack([id_parts, np.zeros((len(new_rows), id_parts.shape[1]), np.float32)])
            item_ids += [ids[n] for n in new_rows]
        for item_id, row, _ in added:
            self.catalog[item_id] = {"title": row.get("title"), "category": row.get("category")}
        return Served(served.version, served.model, ItemTables(item_ids, table, units, biases, id_parts), rows, seq)

    def sync_items(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_sync < self.config.item_sync_seconds:
            return
        with self._sync_lock:
            self._last_sync = now
            current = self.served
            fresh = self._with_store_items(current, current.item_seq)
            if self.search_engine is not None:
                self._sync_search()
            if fresh is not current:
                with self._swap_lock:
                    if self.served is current:
                        self.served = fresh
                    else:  # a model swap happened meanwhile: it loaded every stored item itself
                        self.served = self._with_store_items(self.served, self.served.item_seq)

    # -- requests ---------------------------------------------------------------------------------------------------

    def pseudonym(self, user_id: str) -> str:
        return pseudonym_of(user_id, self._salt_key)

    def _season_now(self) -> np.ndarray:
        today = time.strftime("%Y-%m-%d", time.gmtime())
        if today != self._season_day:
            self._season, self._season_day = season_features(pd.to_datetime([today], utc=True)), today
        return self._season

    def recommend(self, user_id: str | None, items: list[str] | None, k: int, exclude_seen: bool = True, titles: bool = False) -> Recommendation:
        self.sync_items()
        served = self.served
        if user_id is not None:
            history = self.store.history(self.pseudonym(user_id), served.model.history_length)
            rows = [served.rows[i] for i in history if i in served.rows]  # an item the model has no row for is skipped
        else:
            unknown = [i for i in items if i not in served.rows]
            if unknown:
                raise RejectedInput(422, f"unknown item ids: {', '.join(unknown[:10])}",
                                    [{"loc": ["body", "items"], "msg": f"not in the catalog served: {', '.join(unknown[:10])}"}])
            rows = [served.rows[i] for i in items][-served.model.history_length :]
        history_rows = np.array(rows or [0], dtype=np.int64)
        scores = served.model.scores(served.tables, history_rows, self._season_now())
        scores[0] = -np.inf
        if exclude_seen and rows:
            scores[history_rows] = -np.inf
        k = min(k, len(scores) - 1)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        ids = served.tables.item_ids
        out = []
        for row in top:
            if not math.isfinite(scores[row]):
                break
            entry = {"item_id": ids[row - 1], "score": round(float(scores[row]), 5)}
            if titles:
                entry["title"] = self.catalog.get(ids[row - 1], {}).get("title")
            out.append(entry)
        return Recommendation(out, None if rows else "new_user", len(rows), served.version)

    def search(self, query: object, user_id: str | None, k: int) -> dict:
        """Ranked products for a query, personalised by the user's live history when there is one."""
        from rec_pipeline.search.engine import recommender_personal

        if self.search_engine is None:
            raise RejectedInput(503, self.search_unavailable or "search is not available")
        self.sync_items()
        served = self.served
        history = self.store.history(self.pseudonym(user_id), served.model.history_length) if user_id is not None else []
        personal = recommender_personal(served.model, served.tables, served.rows, self._season_now())
        try:
            query, hits = self.search_engine.search(query, history, k, personal)
        except ValueError as error:
            raise RejectedInput(422, f"query: {error}", [{"loc": ["body", "query"], "msg": str(error)}]) from None
        items = [{"item_id": h.item_id, "score": h.score, "title": self.catalog.get(h.item_id, {}).get("title")} for h in hits]
        return {"query": query, "items": items, "history_length": len(history), "model_version": served.version}

    def accept_events(self, events: list[dict]) -> dict:
        """Validate the batch with the pipeline's rules; write the new ones durably to the raw logs and the store."""
        frame = _frame(events, EVENT_COLUMNS, "events")
        result = validate_events(frame, list(self.served.rows), ValidationSettings())
        _refuse_quarantined(result, "events")
        accepted = [dict(zip(EVENT_COLUMNS, values)) for values in zip(*(frame[c] for c in EVENT_COLUMNS))]
        users = pseudonymise(pd.Series([e["user_id"] for e in accepted], dtype=object), self.salt).tolist()
        queries = desensitise_queries(pd.Series([e.get("query") for e in accepted], dtype=object)).tolist()
        for event, user, query in zip(accepted, users, queries):
            event["user_id"], event["query"] = user, query  # no raw user id or raw query goes any further
        fresh = self.store.new_event_ids([str(e["event_id"]) for e in accepted])
        new = [e for e in accepted if str(e["event_id"]) in fresh]
        if new:
            self.events_log.append(new)  # durable before the store, and before the answer
            typed = result.valid.set_index("event_id")
            stamps = pd.to_datetime(typed["ts"], utc=True).astype("int64") / 1e9
            self.store.add(
                (str(e["event_id"]), e["user_id"], str(e["item_id"]) if e["event_type"] in self.positive_events and e.get("item_id") else "",
                 float(stamps[e["event_id"]]))
                for e in new
            )
        return {"accepted": len(new), "duplicates": len(accepted) - len(new)}

    def add_items(self, rows: list[dict]) -> dict:
        """New or changed catalog rows: validated, encoded, logged to the raw catalog and shared through the store."""
        frame = _frame(rows, CATALOG_COLUMNS, "items")
        result = validate_catalog(frame, ValidationSettings())
        _refuse_quarantined(result, "items")
        model = self.served.model
        texts = item_texts(result.valid, model.text_config)
        vectors = self.text_encoder(model).encode(texts.tolist())
        now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")
        logged = [{**{c: row.get(c) for c in CATALOG_COLUMNS}, "first_seen": row.get("first_seen") or now} for row in rows]
        self.catalog_log.append(logged)
        # The item text travels with the row, so that every worker indexes the new item for search as well.
        self.store.put_items([(str(r["item_id"]), {**{c: r.get(c) for c in ("title", "category", "price", "first_seen")}, "text": t}, v)
                              for r, t, v in zip(logged, texts.tolist(), vectors)])
        self.sync_items(force=True)
        served = self.served
        return {"items": len(rows), "catalog_items": len(served.tables.item_ids), "version": served.version}

    def text_encoder(self, model: LiveModel):
        from rec_pipeline.encoders import TextEncoder

        if self._text_encoder is None or self._text_encoder.config.model != model.encoder_config.model:
            from dataclasses import replace

            self._text_encoder = TextEncoder(replace(model.encoder_config, threads=1), onnx_dir=Path(self.config.data_dir) / "models")
        return self._text_encoder


def _frame(records: list[dict], columns: tuple[str, ...], what: str) -> pd.DataFrame:
    known = set(columns)
    unknown = [{"loc": ["body", what, n, key], "msg": f"unknown field {key!r}; the fields are {', '.join(columns)}"}
               for n, record in enumerate(records) for key in record if key not in known]
    if unknown:  # a misspelt field would otherwise vanish without a word
        raise RejectedInput(422, f"unknown field {unknown[0]['loc'][3]!r} in {what} {unknown[0]['loc'][2]}; nothing was accepted", unknown[:50])
    frame = pd.DataFrame.from_records(records, columns=list(columns)).astype(object)
    frame = frame.where(frame.notna(), None)
    frame["source_row"] = range(len(frame))  # the batch position: quarantine reasons name it
    return frame


def _refuse_quarantined(result, what: str) -> None:
    if result.rows_quarantined:
        q = result.quarantine
        errors = [{"loc": ["body", what, int(r.source_row)], "rule": r.rule, "msg": r.reason} for r in q.itertuples()]
        raise RejectedInput(422, f"{len(errors)} of {result.rows_in} {what} fail validation; nothing was accepted", errors[:50])
