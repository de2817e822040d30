"""`item_embeddings`: one L2-normalised vector per validated catalog item, from a transformer over the item's text,
optionally with its top layers fine-tuned on what customers bought together (`finetune.top_layers`)."""

import hashlib
from dataclasses import replace

import dagster as dg
import pandas as pd

from assets.config import from_dataclasses
from assets.gpu import GPU_POOL, gpu_op_tags
from assets.engine import DataEngine
from assets.resources import ComputeDevice, ProjectStore
from assets.splits import training_splits
from assets.validation import validated_catalog
from rec_pipeline.embeddings import ENCODER_SETTINGS_FILE, ItemTextConfig, write_encoder_settings
from rec_pipeline.encoders import EncoderConfig, TextEncoder
from rec_pipeline.finetune import FinetuneConfig, finetune_record, finetuned_encoder
from rec_pipeline.settings import from_settings
from rec_pipeline.storage import read_table

FinetuneSettings = from_dataclasses("FinetuneSettings", FinetuneConfig, exclude=("threads",))


class EmbeddingConfig(from_dataclasses("EncoderSettings", EncoderConfig, ItemTextConfig, exclude=("device", "threads"))):
    """The encoder's and the item text's settings (device and threads come from the `compute` resource), and the
    fine-tuning of the encoder's top: off at top_layers 0, the default (README, "Fine-tuning the encoder's top")."""

    finetune: FinetuneSettings = FinetuneSettings()


@dg.asset(
    group_name="embeddings",
    deps=[validated_catalog, training_splits],
    pool=GPU_POOL,
    op_tags=gpu_op_tags(),
    kinds={"pytorch", "onnx", "spark", "parquet"},
)
def item_embeddings(
    context: dg.AssetExecutionContext, config: EmbeddingConfig, store: ProjectStore, compute: ComputeDevice, engine: DataEngine
) -> dg.MaterializeResult:
    """Text vectors for every item, cold-start ones included: only items whose text is new to this model are encoded.

    With `finetune.top_layers` > 0, the encoder is first fine-tuned on the positive interactions before the test
    start (train and validation, what the shipped ranker is refit on), once per (model, settings, texts, pairs), and
    that model encodes the catalog and, through text_encoder.json, the service's new items."""
    encoder_config = from_settings(EncoderConfig, config)
    finetuned = None
    if config.finetune.top_layers:
        catalog = read_table(store.validated_path("catalog"))
        interactions = pd.read_parquet(store.data_path("splits", "interactions.parquet"), columns=["user_id", "item_id", "ts", "split"])
        before_test = interactions.loc[interactions["split"] != "test", ["user_id", "item_id", "ts"]]
        settings = from_settings(FinetuneConfig, config.finetune, threads=compute.threads)
        folder = finetuned_encoder(before_test, catalog, store.data_path("models"), settings, replace(encoder_config, device=compute.device, threads=compute.threads),
                                   from_settings(ItemTextConfig, config))
        encoder_config, finetuned = replace(encoder_config, model=str(folder)), finetune_record(folder)
        context.log.info(f"encoder top fine-tuned on {finetuned['pairs']:,} co-purchase pairs: {folder}")
    encoder = TextEncoder(replace(encoder_config, device=compute.device, threads=compute.threads), onnx_dir=store.data_path("models"))
    path = store.data_path("embeddings", "item_embeddings.parquet")
    run = engine.engine().embed(store.validated_path("catalog"), encoder, from_settings(ItemTextConfig, config),
                                store.data_path("embeddings", "cache", f"{encoder.fingerprint}.parquet"), path)
    # How an item's text becomes its vector, for whoever encodes a new item later (the service, through ranker_onnx).
    write_encoder_settings(store.data_path("embeddings", ENCODER_SETTINGS_FILE), encoder_config, from_settings(ItemTextConfig, config))

    # The vectors follow from the encoder's fingerprint (weights, tokenizer, pooling, ...) and the item texts.
    keys = read_table(path, ["item_id", "text_hash"])
    version = hashlib.sha256(encoder.fingerprint.encode())
    for item_id, digest in zip(keys["item_id"], keys["text_hash"]):
        version.update(f"{item_id}\t{digest}\n".encode())
    described = encoder.describe()
    device = compute.describe()
    context.log.info(
        f"{run.items:,} items: {run.encoded_now:,} encoded, {run.reused:,} reused, "
        f"with {encoder_config.model} ({described['backend']} on {device}; the {engine.describe()} engine)"
    )
    return dg.MaterializeResult(
        metadata={
            "model": config.model,
            "finetuned_top_layers": config.finetune.top_layers,
            **({"finetune": dg.MetadataValue.json(finetuned)} if finetuned else {}),
            "weights_sha256": described["weights_sha256"],
            "encoder_fingerprint": encoder.fingerprint,
            "backend": described["backend"],
            "device": device,
            "precision": described["precision"],
            "threads": described["threads"],
            "dim": encoder.dim,
            "items_total": run.items,
            "engine": engine.describe(),
            "encoded_now": run.encoded_now,
            "reused": run.reused,
            "model_load_seconds": round(run.load_seconds, 3),
            "encode_seconds": round(run.encode_seconds, 3),
            "items_per_s": round(run.items_per_s, 1) if run.items_per_s else 0.0,
            "onnx_parity_max_abs_diff": _parity_note(described),
            "encoder": dg.MetadataValue.json(described),
            "path": dg.MetadataValue.path(str(path)),
            "dagster/row_count": run.items,
        },
        data_version=dg.DataVersion(version.hexdigest()[:32]),
    )


def _parity_note(described: dict) -> float | str:
    if described["backend"] != "onnx":
        return "no ONNX export (torch backend)"
    if described["onnx_parity_max_abs_diff"] is None:
        return "not loaded: every text was cached"
    return described["onnx_parity_max_abs_diff"]
