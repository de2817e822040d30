"""The two data sets `rec-pipeline evaluate` and the benchmarks run the protocol on, loaded and validated with the
library alone: UCI Online Retail, and the embedded generated default data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

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


@dataclass
class Dataset:
    """Validated positives (user_id, item_id, ts) and, for any cut, the catalog as known before it with the items'
    text vectors (indexed by item_id)."""

    positives: pd.DataFrame
    catalog_rows: Callable[[pd.Timestamp], pd.DataFrame]  # raw catalog rows as of a cut
    rules: list  # the source's own catalog rules, applied with the canonical ones
    embed: Callable[[pd.DataFrame], pd.DataFrame]  # valid catalog -> vectors indexed by item_id
    encoder_config: object = None  # the EncoderConfig `embed` runs
    data_dir: Path = Path("data")
    _seen: dict = field(default_factory=dict)

    def catalog_at(self, cut: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The valid catalog as of `cut` and its text vectors."""
        from rec_pipeline.validation import ValidationSettings, validate_catalog

        if cut not in self._seen:
            catalog = validate_catalog(self.catalog_rows(cut), ValidationSettings(), self.rules).valid
            self._seen[cut] = catalog, self.embed(catalog)
        return self._seen[cut]

    def finetuned_vectors(self, config, purchases: pd.DataFrame, catalog: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
        """`catalog`'s text vectors from the encoder with its top fine-tuned (`FinetuneConfig` `config`) on
        `purchases`, and what the fine-tuning recorded."""
        from dataclasses import replace

        from rec_pipeline.finetune import finetune_record, finetuned_encoder

        folder = finetuned_encoder(purchases, catalog, self.data_dir / "models", replace(config, threads=self.encoder_config.threads),
                                   self.encoder_config)
        return embedder(replace(self.encoder_config, model=str(folder)), self.data_dir)(catalog), finetune_record(folder)


def load_dataset(name: str, data_dir: Path, online_retail: Path, threads: int = 0, quantization: str = "none") -> Dataset:
    """The data set `name`. The default data are generated into `data_dir`/raw when absent; text vectors come from
    the packaged encoder, through the same per-model cache under `data_dir` that the `item_embeddings` asset uses.

    Online Retail has no listing dates or catalog file: its catalog at a cut is derived from the lines before it
    (`catalog_as_of`). The generated data list every item with its attributes and launch date, so their catalog is
    the same at every cut.
    """
    from rec_pipeline.encoders import EncoderConfig
    from rec_pipeline.validation import ValidationSettings, validate_catalog, validate_events

    if name == "online-retail":
        from rec_pipeline.sources.online_retail import CATALOG_RULES, catalog_as_of, load_online_retail

        if not Path(online_retail).exists():
            raise FileNotFoundError(f"Online Retail not found at {online_retail} (see ../shared/data/online_retail/SOURCE.md)")
        event_rows, catalog_rows = load_online_retail(online_retail, Path(data_dir) / "cache" / "sources")
        rules = CATALOG_RULES
        rows_at = lambda cut: catalog_as_of(event_rows.frame, cut)  # noqa: E731
    else:
        from rec_pipeline.generate import GeneratorConfig, generate
        from rec_pipeline.sources.formats import read_source

        raw = Path(data_dir) / "raw"
        if not (raw / "events").exists():
            generate(raw, GeneratorConfig())
        catalog_rows, event_rows = read_source("catalog", raw / "catalog", "canonical"), read_source("events", raw / "events", "canonical")
        rules = catalog_rows.rules
        rows_at = lambda cut: catalog_rows.frame  # noqa: E731
    settings = ValidationSettings()
    catalog = validate_catalog(catalog_rows.frame, settings, catalog_rows.rules).valid
    events = validate_events(event_rows.frame, catalog["item_id"], settings, event_rows.rules).valid
    positives = events.loc[events["event_type"].isin(DATASETS[name].positive_events), ["user_id", "item_id", "ts"]]

    encoder_config = EncoderConfig(threads=threads, quantization=quantization)
    return Dataset(positives.reset_index(drop=True), rows_at, rules, embedder(encoder_config, data_dir), encoder_config, Path(data_dir))


def embedder(encoder_config, data_dir: Path) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """valid catalog -> its text vectors by item_id, from `encoder_config`'s model through the per-fingerprint cache
    under `data_dir` that the `item_embeddings` asset uses (the ONNX export beside the other models)."""
    from rec_pipeline.embeddings import EmbeddingCache, embed_items
    from rec_pipeline.encoders import TextEncoder

    encoder = TextEncoder(encoder_config, onnx_dir=Path(data_dir) / "models")
    cache = EmbeddingCache(Path(data_dir) / "embeddings" / "cache" / f"{encoder.fingerprint}.parquet", encoder.dim)

    def embed(valid_catalog: pd.DataFrame) -> pd.DataFrame:
        embedded = embed_items(valid_catalog, encoder, cache)
        if embedded.encoded_now:
            cache.save()
        return pd.DataFrame(embedded.vectors, index=embedded.item_ids)

    return embed
