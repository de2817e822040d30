"""The two data sets `rec-pipeline evaluate` and the benchmarks run the protocol on, loaded and validated with the
library alone: UCI Online Retail, and the embedded generated default data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class DatasetSetup:
    test_start: str  # ISO date: where the test window starts
    validation_weeks: int
    positive_events: tuple[str, ...]  # which events count as interactions


# Online Retail has only purchases; the generated logs have 20x more clicks and carts than purchases.
DATASETS = {
    "online-retail": DatasetSetup("2011-09-01", 4, ("purchase",)),
    "default": DatasetSetup("2025-10-17", 2, ("purchase", "add_to_cart", "click")),
}


def load_dataset(name: str, data_dir: Path, online_retail: Path, threads: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Validated positives (user_id, item_id, ts), the valid catalog, and item text vectors (indexed by item_id).

    The default data are generated into `data_dir`/raw when absent; text vectors come from the packaged encoder,
    through the same per-model cache under `data_dir` that the `item_embeddings` asset uses.
    """
    from rec_pipeline.embeddings import EmbeddingCache, embed_items
    from rec_pipeline.encoders import EncoderConfig, TextEncoder
    from rec_pipeline.validation import ValidationSettings, validate_catalog, validate_events

    if name == "online-retail":
        from rec_pipeline.sources.online_retail import load_online_retail

        if not Path(online_retail).exists():
            raise FileNotFoundError(f"Online Retail not found at {online_retail} (see ../shared/data/online_retail/SOURCE.md)")
        event_rows, catalog_rows = load_online_retail(online_retail, Path(data_dir) / "cache" / "sources")
    else:
        from rec_pipeline.generate import GeneratorConfig, generate
        from rec_pipeline.sources.formats import read_source

        raw = Path(data_dir) / "raw"
        if not (raw / "events").exists():
            generate(raw, GeneratorConfig())
        catalog_rows, event_rows = read_source("catalog", raw / "catalog", "canonical"), read_source("events", raw / "events", "canonical")
    settings = ValidationSettings()
    catalog = validate_catalog(catalog_rows.frame, settings, catalog_rows.rules).valid
    events = validate_events(event_rows.frame, catalog["item_id"], settings, event_rows.rules).valid
    positives = events.loc[events["event_type"].isin(DATASETS[name].positive_events), ["user_id", "item_id", "ts"]]

    encoder = TextEncoder(EncoderConfig(threads=threads), onnx_dir=Path(data_dir) / "models")
    cache = EmbeddingCache(Path(data_dir) / "embeddings" / "cache" / f"{encoder.fingerprint}.parquet", encoder.dim)
    embedded = embed_items(catalog, encoder, cache)
    if embedded.encoded_now:
        cache.save()
    return positives, catalog, pd.DataFrame(embedded.vectors, index=embedded.item_ids)
