"""Item embeddings: the text of each catalog item, encoded once per (model fingerprint, text) and kept in a cache.

A re-run after N items were added or changed encodes only those N. Vectors are stored as Parquet (item id, text
hash, float32 fixed-size list), never pickled.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rec_pipeline.encoders import EncoderConfig, TextEncoder, clean_text, text_hash
from rec_pipeline.storage import atomic_path

@dataclass(frozen=True)
class ItemTextConfig:
    """What an item's text is: which catalog fields, joined how."""

    text_fields: tuple[str, ...] = ("title", "description", "category", "brand")
    separator: str = ". "


def item_texts(catalog: pd.DataFrame, text: ItemTextConfig = ItemTextConfig()) -> pd.Series:
    """Each item's text: the non-empty fields, cleaned, joined by the separator ("Candle holder. Holds tea lights. candles")."""
    fields, separator = text.text_fields, text.separator
    missing = [f for f in fields if f not in catalog.columns]
    if missing:
        raise ValueError(f"text fields {missing} are not catalog columns ({', '.join(catalog.columns)})")
    parts = [catalog[f].map(clean_text) for f in fields]
    return pd.Series([separator.join(p for p in row if p) for row in zip(*parts)], index=catalog.index, dtype=object)


ENCODER_SETTINGS_FILE = "text_encoder.json"


def write_encoder_settings(path: str | Path, encoder: EncoderConfig, text: ItemTextConfig) -> Path:
    """The encoder and item-text settings the vectors were made with (device and threads aside: they are the
    machine's), as JSON, so that an item added later is encoded the same way."""
    settings = {"encoder": {k: v for k, v in asdict(encoder).items() if k not in ("device", "threads")}, "text": asdict(text)}
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(settings, indent=2))
    return Path(path)


def read_encoder_settings(path: str | Path) -> tuple[EncoderConfig, ItemTextConfig]:
    raw = json.loads(Path(path).read_text())
    text = raw["text"]
    return EncoderConfig(**raw["encoder"]), ItemTextConfig(tuple(text["text_fields"]), text["separator"])


def write_vectors(path: str | Path, keys: dict[str, Sequence[str]], vectors: np.ndarray) -> Path:
    """A Parquet file with the key columns and an `embedding` column of float32 fixed-size lists."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    table = pa.table({**{k: pa.array(list(v), pa.string()) for k, v in keys.items()}, "embedding": embedding})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_vectors(path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The key columns and the (rows, dim) float32 matrix written by `write_vectors`."""
    table = pq.read_table(path)
    column = table.column("embedding").combine_chunks()
    dim = column.type.list_size
    matrix = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).astype(np.float32, copy=False)
    return table.drop(["embedding"]).to_pandas(), matrix


class EmbeddingCache:
    """Vectors by text hash for one encoder fingerprint: a folder of Parquet parts, each run adding one part with what
    it encoded (the Spark engine's tasks add theirs the same way), so a cache is never rewritten whole."""

    def __init__(self, path: str | Path, dim: int):
        self.path = Path(path)
        self.dim = dim
        self._vectors: dict[str, np.ndarray] = {}
        self._new: list[str] = []
        if self.path.exists():
            keys, matrix = read_vectors(self.path)
            if matrix.shape[1] != dim:
                raise ValueError(f"{self.path} holds {matrix.shape[1]}-d vectors, the encoder makes {dim}-d ones")
            self._vectors = dict(zip(keys["text_hash"], matrix))

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def get(self, keys: Sequence[str]) -> np.ndarray:
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        self._new.extend(k for k in keys if k not in self._vectors)
        self._vectors.update(zip(keys, vectors))

    def save(self) -> None:
        """Add what was put since the cache was read, as one new part."""
        if self.path.is_file():  # one file, as caches were before they were folders: becomes the folder's first part
            old = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
            self.path.replace(old)
            self.path.mkdir(parents=True)
            old.replace(self.path / "part-00000.parquet")
        if self._new:
            write_vectors(self.path / f"part-{uuid.uuid4().hex}.parquet", {"text_hash": self._new}, self.get(self._new))
            self._new = []


def text_rows(catalog: pd.DataFrame, text: ItemTextConfig = ItemTextConfig()) -> pd.DataFrame:
    """Each catalog item's text and its hash (row by row): what the cache is keyed by."""
    texts = item_texts(catalog, text)
    return pd.DataFrame({"item_id": catalog["item_id"].astype(str).to_numpy(), "text": texts.to_numpy(dtype=object),
                         "text_hash": [text_hash(t) for t in texts]})


def encode_rows(rows: pd.DataFrame, encoder: TextEncoder) -> pd.DataFrame:
    """(text_hash, text) rows encoded: (text_hash, embedding as a list of floats), the form a Spark task hands back."""
    vectors = encoder.encode(rows["text"].tolist()) if len(rows) else np.zeros((0, encoder.dim), np.float32)
    return pd.DataFrame({"text_hash": rows["text_hash"].to_numpy(dtype=object), "embedding": list(vectors)})


@dataclass
class EmbeddingRun:
    item_ids: list[str]
    text_hashes: list[str]
    vectors: np.ndarray
    encoded_now: int  # items whose text had no cached vector
    reused: int
    load_seconds: float  # loading the model, only when something had to be encoded
    encode_seconds: float

    @property
    def items_per_s(self) -> float | None:
        return self.encoded_now / self.encode_seconds if self.encoded_now and self.encode_seconds > 0 else None


def embed_items(
    catalog: pd.DataFrame,
    encoder: TextEncoder,
    cache: EmbeddingCache,
    text: ItemTextConfig = ItemTextConfig(),
) -> EmbeddingRun:
    """One vector per catalog item; only texts the cache has not seen are encoded, and the cache learns them."""
    rows = text_rows(catalog, text)
    missing = rows[~rows["text_hash"].map(cache.__contains__).astype(bool)].drop_duplicates("text_hash")
    started = time.perf_counter()
    if len(missing):
        encoder.load()
    loaded = time.perf_counter()
    if len(missing):
        encoded = encode_rows(missing, encoder)
        cache.put(encoded["text_hash"].tolist(), np.stack(encoded["embedding"].to_numpy()))
    encoded_at = time.perf_counter()
    hashes = rows["text_hash"].tolist()
    encoded_now = int(rows["text_hash"].isin(missing["text_hash"]).sum())
    return EmbeddingRun(
        item_ids=rows["item_id"].tolist(),
        text_hashes=hashes,
        vectors=cache.get(hashes),
        encoded_now=encoded_now,
        reused=len(hashes) - encoded_now,
        load_seconds=loaded - started,
        encode_seconds=encoded_at - loaded,
    )
