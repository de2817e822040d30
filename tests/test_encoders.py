"""The text encoder and the embedding cache: real vectors, parity with sentence-transformers, ONNX = PyTorch, reuse."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from rec_pipeline.embeddings import EmbeddingCache, ItemTextConfig, embed_items, item_texts, read_vectors, write_vectors
from rec_pipeline.encoders import DEFAULT_MODEL, INT8_MIN_COSINE, EncoderConfig, TextEncoder, model_folder, weights_sha256

TEXTS = [
    "Sage green ceramic candle holder. Holds standard tea lights.",
    "Scented soy wax candle, 40 hour burn",
    "Braided USB-C charging cable, 2 m",
    "WHITE HANGING HEART T-LIGHT HOLDER",
    "a " + "very long description of a linen tea towel " * 40,
    "x",
]


@pytest.fixture(scope="module")
def onnx_encoder(tmp_path_factory):
    return TextEncoder(EncoderConfig(threads=2), onnx_dir=tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module")
def torch_encoder():
    return TextEncoder(EncoderConfig(threads=2, backend="torch"))


def test_default_backend_on_the_cpu_is_onnx_runtime_and_is_described(onnx_encoder):
    onnx_encoder.encode(["load the model"])
    described = onnx_encoder.describe()
    assert (described["backend"], described["device"], described["precision"]) == ("onnx", "cpu", "fp32")
    assert described["dim"] == 384 and described["onnx_parity_max_abs_diff"] <= 1e-4
    weights = model_folder(DEFAULT_MODEL) / "model.safetensors"
    assert described["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_vectors_are_real_a_candle_holder_is_nearer_a_candle_than_a_cable(onnx_encoder):
    holder, candle, cable = onnx_encoder.encode(["ceramic candle holder", "scented candle", "USB cable"])
    assert holder @ candle > holder @ cable + 0.3
    holder, candle, cable = onnx_encoder.encode(TEXTS[:3])  # the same with catalog-style texts
    assert holder @ candle > holder @ cable + 0.1
    assert np.allclose(np.linalg.norm(onnx_encoder.encode(TEXTS), axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_parity_with_sentence_transformers(backend, onnx_encoder, torch_encoder):
    from sentence_transformers import SentenceTransformer

    peer = SentenceTransformer(str(model_folder(DEFAULT_MODEL)), device="cpu")
    expected = peer.encode(TEXTS, normalize_embeddings=True)
    ours = (onnx_encoder if backend == "onnx" else torch_encoder).encode(TEXTS)
    assert np.min(np.sum(ours * expected, axis=1)) >= 0.9999


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_onnx_runtime_matches_pytorch_on_batch_sizes_and_lengths(batch_size, onnx_encoder, torch_encoder):
    texts = TEXTS * 4
    difference = onnx_encoder.encode(texts, batch_size) - torch_encoder.encode(texts, batch_size)
    assert np.abs(difference).max() <= 1e-4


def test_bad_text_has_a_defined_result(onnx_encoder):
    empty, none, control, clean, chinese, huge, truncated = onnx_encoder.encode(
        ["", None, "candle\x00 holder\x07", "candle holder", "陶瓷烛台", "candle " * 100_000, "candle " * 300]
    )
    assert np.array_equal(empty, none)  # None is the empty text
    assert np.abs(control - clean).max() < 1e-6  # control characters are spaces, then collapsed
    assert abs(np.linalg.norm(chinese) - 1) < 1e-5 and chinese @ empty < 0.99
    assert np.abs(huge - truncated).max() < 1e-5  # both are cut at max_length tokens


def test_pooling_choices_give_other_vectors_and_other_fingerprints(tmp_path, onnx_encoder):
    cls = TextEncoder(EncoderConfig(threads=2, pooling="cls", backend="torch"))
    last = TextEncoder(EncoderConfig(threads=2, pooling="last_token", backend="torch"))
    fingerprints = {onnx_encoder.fingerprint, cls.fingerprint, last.fingerprint}
    assert len(fingerprints) == 3
    vectors = [e.encode(TEXTS[:1])[0] for e in (onnx_encoder, cls, last)]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in vectors)
    assert vectors[0] @ vectors[1] < 0.999 and vectors[1] @ vectors[2] < 0.999
    prefixed = TextEncoder(EncoderConfig(threads=2, prefix="passage: ", backend="torch"))
    assert prefixed.fingerprint not in fingerprints


def test_models_without_safetensors_or_not_on_disk_are_refused(tmp_path):
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ValueError, match="no .safetensors weights"):
        weights_sha256(tmp_path)
    with pytest.raises(FileNotFoundError, match="offline"):
        model_folder("someone/not-a-cached-model")


def test_item_texts_join_the_non_empty_fields():
    catalog = pd.DataFrame(
        {"item_id": ["a", "b"], "title": ["Candle", "Mug"], "description": ["Soy wax.", None], "category": ["candles", ""], "brand": [None, "Hearth"]}
    )
    assert item_texts(catalog).tolist() == ["Candle. Soy wax.. candles", "Mug. Hearth"]
    assert item_texts(catalog, ItemTextConfig(("brand", "title"), " | ")).tolist() == ["Candle", "Hearth | Mug"]
    with pytest.raises(ValueError, match="not catalog columns"):
        item_texts(catalog, ItemTextConfig(("colour",)))


def test_cache_reencodes_only_new_or_changed_texts(tmp_path, onnx_encoder):
    catalog = pd.DataFrame({"item_id": ["a", "b", "c"], "title": TEXTS[:3]})
    cache = EmbeddingCache(tmp_path / "cache.parquet", onnx_encoder.dim)
    first = embed_items(catalog, onnx_encoder, cache, ItemTextConfig(("title",)))
    assert (first.encoded_now, first.reused) == (3, 0)
    cache.save()

    changed = catalog.copy()
    changed.loc[1, "title"] = "Unscented beeswax pillar candle"
    grown = pd.concat([changed, pd.DataFrame({"item_id": ["d"], "title": [TEXTS[3]]})], ignore_index=True)
    reloaded = EmbeddingCache(tmp_path / "cache.parquet", onnx_encoder.dim)
    second = embed_items(grown, onnx_encoder, reloaded, ItemTextConfig(("title",)))
    assert (second.encoded_now, second.reused) == (2, 2)  # b changed, d is new
    assert np.array_equal(second.vectors[0], first.vectors[0]) and np.array_equal(second.vectors[2], first.vectors[2])
    assert np.abs(second.vectors[1] - onnx_encoder.encode([changed.loc[1, "title"]])[0]).max() < 1e-6

    # A run whose texts are all cached never loads the model.
    fresh = TextEncoder(EncoderConfig(threads=2), onnx_dir=tmp_path / "onnx")
    assert fresh.fingerprint == onnx_encoder.fingerprint
    third = embed_items(grown, fresh, reloaded, ItemTextConfig(("title",)))
    assert (third.encoded_now, third.reused) == (0, 4) and fresh.describe()["onnx_path"] is None
    assert np.array_equal(third.vectors, second.vectors)

    with pytest.raises(ValueError, match="384-d"):
        EmbeddingCache(tmp_path / "cache.parquet", 768)


def test_vectors_round_trip_through_parquet(tmp_path):
    vectors = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    write_vectors(tmp_path / "v.parquet", {"item_id": list("abcde")}, vectors)
    keys, matrix = read_vectors(tmp_path / "v.parquet")
    assert keys["item_id"].tolist() == list("abcde") and np.array_equal(matrix, vectors)


def test_a_checked_onnx_export_is_reused_and_a_tampered_one_is_refused(tmp_path, onnx_encoder, seed_encoder):
    import onnx
    from onnx import numpy_helper

    seed_encoder(tmp_path)  # an export checked earlier in this test process (tests/conftest.py), its parity record beside it
    first = TextEncoder(EncoderConfig(threads=2), onnx_dir=tmp_path)
    expected = first.encode(TEXTS)
    record = json.loads(first.onnx_path.with_suffix(".parity.json").read_text())
    assert record["max_abs_diff"] <= 1e-4 and first.onnx_parity == record["max_abs_diff"]
    assert first.model is None  # the recorded check stands for the same file: no PyTorch model needed
    assert np.allclose(expected, onnx_encoder.encode(TEXTS), atol=1e-6)  # the same vectors as this process's own export

    model = onnx.load(str(first.onnx_path))
    weights = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    weights.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weights) * 1.5, weights.name))
    onnx.save(model, str(first.onnx_path))
    with pytest.raises(RuntimeError, match="ONNX Runtime differs from PyTorch"):
        TextEncoder(EncoderConfig(threads=2), onnx_dir=tmp_path).encode(TEXTS)


def test_the_int8_encoder_is_its_own_model_behind_a_cosine_gate(onnx_encoder):
    onnx_encoder.encode(["export fp32 first"])
    int8 = TextEncoder(EncoderConfig(threads=2, quantization="int8"), onnx_dir=onnx_encoder.onnx_dir)  # quantises that export
    vectors = int8.encode(TEXTS)
    described = int8.describe()
    assert described["precision"] == "int8" and described["onnx_parity_min_cosine"] >= INT8_MIN_COSINE
    # Another fingerprint: its vectors never mix with fp32 ones in a cache.
    assert int8.fingerprint != onnx_encoder.fingerprint and int8.onnx_path.name == f"encoder-{int8.fingerprint}.onnx"
    fp32 = onnx_encoder.encode(TEXTS)
    cosines = np.sum(vectors * fp32, axis=1)
    assert cosines.min() >= INT8_MIN_COSINE and not np.allclose(vectors, fp32, atol=1e-4)  # close, but quantised
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert int8.onnx_path.stat().st_size < 0.7 * onnx_encoder.onnx_path.stat().st_size  # int8 MatMul weights
    with pytest.raises(ValueError, match="quantization int8 runs in ONNX Runtime"):
        TextEncoder(EncoderConfig(quantization="int8", backend="torch"))
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        TextEncoder(EncoderConfig(quantization="int4"))
