"""The lexical search baseline a team would otherwise stand up: bm25s (BM25 on sparse matrices) over the same item
text, behind FastAPI on uvicorn, as `bench.search` runs it beside our /search. Not part of the product.

    uvicorn bench.lexical_peer:app --workers 2   (reads REC_PIPELINE_BENCH_DATA, default data/)
"""

from __future__ import annotations

import os
from pathlib import Path

import bm25s
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response

from rec_pipeline.embeddings import item_texts, read_encoder_settings

DATA = Path(os.environ.get("REC_PIPELINE_BENCH_DATA", "data"))
catalog = pd.read_parquet(DATA / "validated" / "catalog.parquet").drop_duplicates("item_id", keep="last").reset_index(drop=True)
_, text_config = read_encoder_settings(DATA / "embeddings" / "text_encoder.json")
ids = catalog["item_id"].astype(str).tolist()
retriever = bm25s.BM25()
retriever.index(bm25s.tokenize(item_texts(catalog, text_config).tolist(), show_progress=False), show_progress=False)
app = FastAPI()


@app.get("/ping")
async def ping():
    return {"ok": True}


@app.post("/search")
async def search(request: Request) -> Response:
    body = orjson.loads(await request.body())
    tokens = bm25s.tokenize([body["query"]], show_progress=False)
    k = min(int(body.get("k", 10)), len(ids))
    rows, scores = retriever.retrieve(tokens, k=k, show_progress=False, n_threads=1)
    hits = [{"item_id": ids[r], "score": float(s)} for r, s in zip(rows[0].tolist(), scores[0].tolist()) if s > 0]
    return Response(orjson.dumps({"items": hits}), media_type="application/json")
