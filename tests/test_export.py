"""The serving export: the ONNX scoring path against PyTorch, the parity gate, and serving from the bundle."""

import json

import pandas as pd
import pytest
import torch

from rec_pipeline.ranker import tensorrt_engine
from rec_pipeline.ranker.export import PARITY_TOLERANCE, OnnxRanker, ServingScorer, export_onnx, onnx_session, parity_probes, write_bundle
from rec_pipeline.ranker.model import HybridRanker, RankerConfig, season_features

N_ITEMS = 300


def trained_looking_model(pooling: str = "mean", seasonal: bool = True) -> HybridRanker:
    """Random weights at the scale training leaves them (the init is near zero, which would hide mistakes)."""
    torch.manual_seed(0)
    config = RankerConfig(n_items=N_ITEMS, text_dim=16, dim=32, history=40, pooling=pooling, seasonal=seasonal, n_categories=3, n_price_bands=4)
    side = torch.stack([torch.randint(0, 4, (N_ITEMS + 1,)), torch.randint(0, 5, (N_ITEMS + 1,))], dim=1)
    model = HybridRanker(config, torch.randn(N_ITEMS + 1, 16), torch.rand(N_ITEMS + 1) > 0.3, side)
    for parameter in model.parameters():
        parameter.data.normal_(0, 0.3)
    return model.eval()


@pytest.mark.parametrize("pooling,seasonal", [("mean", True), ("attention", True), ("mean", False)])
def test_the_serving_path_scores_exactly_what_the_model_scores(pooling, seasonal):
    model = trained_looking_model(pooling, seasonal)
    history = torch.tensor([[0] * 40, [0] * 37 + [5, 9, 200], list(range(1, 41))])
    season = torch.tensor([[1.0, 0.4, -0.9]])
    with torch.inference_mode():
        table = model.all_items()
        expected = model.logits(model.users(history, table), table, season)[:, 1:]
        served = ServingScorer(model)(history, torch.arange(1, N_ITEMS + 1), season)
    assert torch.allclose(served, expected, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_onnx_runtime_matches_pytorch_on_every_probe_shape(tmp_path, pooling):
    model = trained_looking_model(pooling)
    folder, scorer = write_bundle(model, [f"i{i}" for i in range(N_ITEMS)], tmp_path)
    probes = parity_probes(scorer, onnx_session(folder / "ranker.onnx"))
    shapes = {(p.history_items, p.candidates) for p in probes}
    assert {(h, n) for h in ("empty", "short", "long") for n in (1, 64, 1000)} <= shapes and ("mixed", 64) in shapes
    assert max(p.max_abs_diff for p in probes) <= PARITY_TOLERANCE


def test_an_export_with_perturbed_weights_fails_the_parity_probes(tmp_path):
    model = trained_looking_model()
    scorer = ServingScorer(model)
    broken = ServingScorer(model)
    broken.user_linear.weight.data += 1e-3
    export_onnx(broken, tmp_path / "ranker.onnx")
    probes = parity_probes(scorer, onnx_session(tmp_path / "ranker.onnx"))
    assert min(p.max_abs_diff for p in probes if p.history_items != "empty") > PARITY_TOLERANCE


def test_the_bundle_recommends_unseen_items_in_score_order(tmp_path):
    model = trained_looking_model()
    item_ids = [f"i{i:03d}" for i in range(N_ITEMS)]
    folder, scorer = write_bundle(model, item_ids, tmp_path)
    ranker = OnnxRanker.from_bundle(folder)
    history = ["i005", "i017", "i123"]
    when = pd.Timestamp("2025-12-01", tz="UTC")
    top = ranker.recommend(history, k=7, when=when)
    assert len(top) == 7 and not set(top["item_id"]) & set(history)
    assert list(top["score"]) == sorted(top["score"], reverse=True)
    # The same top 7 as PyTorch over every unseen item.
    rows = torch.tensor([[6, 18, 124]])
    candidates = torch.tensor([r for r in range(1, N_ITEMS + 1) if r not in (6, 18, 124)])
    with torch.inference_mode():
        scores = scorer(rows, candidates, torch.from_numpy(season_features([when])))[0]
    expected = [item_ids[int(candidates[i]) - 1] for i in torch.argsort(scores, descending=True, stable=True)[:7]]
    assert list(top["item_id"]) == expected
    # A new user with no history still gets recommendations.
    assert len(ranker.recommend([], k=3)) == 3


def test_bad_bundles_and_unknown_items_give_clear_errors(tmp_path):
    folder, _ = write_bundle(trained_looking_model(), [f"i{i}" for i in range(N_ITEMS)], tmp_path / "ok")
    with pytest.raises(KeyError, match="unknown item ids .*: nope"):
        OnnxRanker.from_bundle(folder).recommend(["i1", "nope"])
    with pytest.raises(FileNotFoundError, match="no ONNX model here"):
        OnnxRanker.from_bundle(tmp_path / "missing")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "ranker.onnx").write_bytes(b"not a protobuf at all" * 10)
    with pytest.raises(ValueError, match="corrupt/ranker.onnx: not a loadable ONNX model"):
        OnnxRanker.from_bundle(corrupt)
    (folder / "items.json").unlink()
    with pytest.raises(FileNotFoundError, match="items.json: missing beside the ONNX model"):
        OnnxRanker.from_bundle(folder)
    (folder / "items.json").write_text("{not json")
    with pytest.raises(ValueError, match="unreadable items.json"):
        OnnxRanker.from_bundle(folder)


def test_the_bundle_records_its_inputs_and_opset(tmp_path):
    folder, _ = write_bundle(trained_looking_model(), [f"i{i}" for i in range(N_ITEMS)], tmp_path)
    serving = json.loads((folder / "serving.json").read_text())
    assert serving["opset"] == 17 and serving["history"] == 40 and set(serving["inputs"]) == {"history", "candidates", "season"}
    import onnx

    graph = onnx.load(str(folder / "ranker.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"history": ["batch", "length"], "candidates": ["n"], "season": ["season_rows", 3]}


@pytest.mark.skipif(tensorrt_engine.unavailable_reason() is None, reason="TensorRT and a GPU are present here")
def test_without_tensorrt_or_a_gpu_the_reason_is_named():
    assert tensorrt_engine.unavailable_reason() in ("the tensorrt package is not installed", "no CUDA device visible")


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_the_live_graphs_match_pytorch_and_a_new_item_scores_as_the_model_scores_it(tmp_path, pooling):
    from rec_pipeline.ranker.live import LiveModel, check_live_parity, write_live
    from rec_pipeline.ranker.model import ItemFeatures

    model = trained_looking_model(pooling)
    features = ItemFeatures(("a", "b", "c"), (0.0, 1.0, 2.0), True)
    write_live(model, features, encoder_settings(tmp_path), tmp_path)
    probes = check_live_parity(model, tmp_path)
    assert len(probes) == 6 and max(p.max_abs_diff for p in probes) <= PARITY_TOLERANCE
    (tmp_path / "serving.json").write_text(json.dumps({"history": 40, "temperature": model.config.temperature}))
    live = LiveModel(tmp_path, [f"i{i}" for i in range(N_ITEMS)])
    assert live.features == features
    # An item the model never saw: the encoder's row, appended to the tables, scores what the model would give a cold
    # item with that text and side features.
    text, rows = torch.randn(1, 16), pd.DataFrame({"category": ["b"], "price": [3.5]})
    rep, unit, bias = live.encode(text.numpy(), rows)
    tables = live.tables
    import numpy as np
    grown = type(tables)(tables.item_ids + ["new"], *(np.vstack([a, b]) for a, b in
                         ((tables.table, rep), (tables.unit, unit), (tables.bias, bias), (tables.id_part, np.zeros_like(rep)))))
    history = np.array([5, 9, N_ITEMS + 1])  # the new item in the history too
    season = season_features(pd.to_datetime(["2024-12-01"]))
    got = live.scores(grown, history, season)
    with torch.inference_mode():
        side = torch.tensor([[2, 3]])  # "b" is category 2; log(3.5) = 1.25 lies above edges 0 and 1: band 3
        assert torch.equal(torch.from_numpy(features.encode(rows)), side)
        cold = model.text_proj(text) + model.category(side[:, 0]) + model.price_band(side[:, 1])
        table = torch.cat([model.all_items(), cold])
        user = model.users(torch.from_numpy(history)[None], table)
        expected = model.logits(user, table, torch.from_numpy(season))[0].numpy()
    assert got.shape == (N_ITEMS + 2,) and np.abs(got - expected).max() <= 1e-4


def test_a_live_export_with_a_broken_encoder_fails_its_gate(tmp_path):
    from rec_pipeline.ranker.live import check_live_parity, write_live
    from rec_pipeline.ranker.model import ItemFeatures

    model = trained_looking_model()
    write_live(model, ItemFeatures(), encoder_settings(tmp_path), tmp_path)
    with torch.no_grad():
        model.text_proj[0].weight.add_(0.01)  # the PyTorch model drifts from what was exported
    with pytest.raises(ValueError, match="live ONNX graphs differ"):
        check_live_parity(model, tmp_path)


def encoder_settings(folder):
    from rec_pipeline.embeddings import ItemTextConfig, write_encoder_settings
    from rec_pipeline.encoders import EncoderConfig

    return write_encoder_settings(folder / "settings" / "text_encoder.json", EncoderConfig(), ItemTextConfig())
