"""The evaluation report: segments, bootstrap intervals, the champion/challenger gate, and the HTML a person opens."""

import base64
import html
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rec_pipeline.evaluation import recent_popularity_scores, temporal_split
from rec_pipeline.report import (
    METRICS, SEGMENTS, ReportConfig, bootstrap_interval, build_report, gate, headline_ratios, resample_weights, segment_views,
)
from rec_pipeline.report_html import markdown_summary, plots, render_html, score_sample
from tests.test_evaluation import CATALOG, CUT, SAMPLE


def test_segments_split_the_test_users_as_defined():
    split = temporal_split(SAMPLE, CUT, catalog=CATALOG)  # test users u1 (targets c, f) and u2 (target d)
    items = list(split.item_ids)
    views = segment_views(split, new_user_ids=["u2", "u9"])
    assert list(views) == list(SEGMENTS)
    assert list(views["all"].rows) == [0, 1]
    # Warm: only u1 has a target seen in train (c); only warm items are ranked for it.
    assert list(views["warm_items"].rows) == [0] and [[items[i] for i in t] for t in views["warm_items"].targets] == [["c"]]
    assert not (views["warm_items"].candidates & split.cold_items[None, :]).any()
    # Cold: the protocol's cold-only view.
    assert list(views["cold_items"].rows) == [0, 1] and [[items[i] for i in t] for t in views["cold_items"].targets] == [["f"], ["d"]]
    assert list(views["new_users"].rows) == [1]


def test_recent_popularity_counts_buyers_since_the_start_of_the_window():
    split = temporal_split(SAMPLE, CUT, catalog=CATALOG)
    scores = recent_popularity_scores(split, SAMPLE, pd.Timestamp("2025-01-10", tz="UTC"))
    by_item = dict(zip(split.item_ids, scores[0]))
    # Since Jan 10: b (u2), a (u3), c (u5) once each; all-time train buyers (a 2, b 2, c 1) break the tie.
    assert by_item["a"] == by_item["b"] > by_item["c"] > by_item["e"] == by_item["d"] == 0


def test_the_bootstrap_interval_matches_the_normal_approximation():
    values = np.random.default_rng(0).normal(0.3, 0.2, size=2_000)
    lo, hi = bootstrap_interval(values, resample_weights(len(values), 2_000, seed=1))
    half_width = 1.96 * values.std() / np.sqrt(len(values))
    assert lo < values.mean() < hi
    assert (hi - lo) / 2 == pytest.approx(half_width, rel=0.1)


def synthetic_report(gain, min_users: int = 50, users: int = 400, seed: int = 0):
    """A report where the challenger ("ranker") scores each user's target `gain` (per user, or for all) above the
    champion's score for it, on the same noise."""
    rng = np.random.default_rng(seed)
    gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), (users,))
    items = 60
    candidates = np.ones((users, items), dtype=bool)
    targets = [np.array([rng.integers(items)]) for _ in range(users)]
    noise = rng.normal(size=(users, items))
    champion = noise.copy()
    challenger = noise.copy()
    for u, t in enumerate(targets):
        champion[u, t] += 1.0
        challenger[u, t] += 1.0 + gain[u]
    from rec_pipeline.report import SegmentView

    views = {"all": SegmentView(np.arange(users), candidates, targets)}
    return build_report({"ranker": challenger, "champion": champion, "random": rng.random((users, items))}, views, ReportConfig(bootstrap_resamples=500, min_segment_users=min_users))


@pytest.mark.parametrize(
    "gain, promote, words",
    [
        (1.5, True, "promoted: the challenger is better by more than the confidence interval"),
        (-1.5, False, "not promoted: the challenger is worse"),
        (0.0, False, "not promoted: the difference lies within the confidence interval"),
    ],
)
def test_the_gate_promotes_only_a_challenger_better_by_more_than_the_interval(gain, promote, words):
    report = synthetic_report(gain)
    decision = gate(report, "ndcg@20", "all", challenger="2", champion="1")
    assert decision.promote is promote
    assert words in decision.reason and "challenger v2" in decision.reason and "champion v1" in decision.reason
    lo, hi = decision.interval
    assert lo <= decision.difference <= hi
    assert decision.difference == pytest.approx(decision.challenger_value - decision.champion_value)


def test_a_slightly_better_challenger_inside_the_interval_is_a_tie():
    # Identical except for three users: two ranked better, one worse; too few to tell apart from chance.
    gain = np.zeros(400)
    gain[[3, 50]], gain[100] = 3.0, -3.0
    report = synthetic_report(gain)
    decision = gate(report, "ndcg@20", "all", challenger="2", champion="1")
    assert decision.difference > 0 and decision.interval[0] <= 0
    assert not decision.promote and "within the confidence interval" in decision.reason


def test_the_gate_without_a_champion_promotes_and_never_promotes_the_champion_over_itself():
    report = synthetic_report(0.0)
    first = gate(report, "ndcg@20", "all", challenger="1", champion=None)
    assert first.promote and first.reason.startswith("no champion yet: version 1 becomes the champion")
    again = gate(report, "ndcg@20", "all", challenger="1", champion="1")
    assert not again.promote and "already is the champion" in again.reason


def test_the_gate_rejects_an_unknown_metric_or_segment():
    report = synthetic_report(0.0)
    with pytest.raises(ValueError, match="unknown gate metric 'ndcg@7'"):
        gate(report, "ndcg@7", "all", challenger="2", champion="1")
    with pytest.raises(ValueError, match="unknown gate segment 'vip'"):
        gate(report, "ndcg@20", "vip", challenger="2", champion="1")


def rendered(tmp_path):
    split = temporal_split(SAMPLE, CUT, catalog=CATALOG)
    views = segment_views(split, new_user_ids=["u2"])
    rng = np.random.default_rng(0)
    scores = {name: rng.random((len(split.test_rows), len(split.item_ids))) for name in ("ranker", "als", "popularity")}
    report = build_report(scores, views, ReportConfig(bootstrap_resamples=200))
    decision = gate(report, "ndcg@20", "all", challenger="1", champion=None)
    images = plots(report, {m: score_sample(scores[m], views["all"]) for m in ("ranker", "als")})
    page = render_html(report, decision, {"git commit": "abc123", "ONNX sha256": "f00"}, images, "test report")
    path = tmp_path / "report.html"
    path.write_text(page)
    return report, page, path, images


def test_the_html_is_self_contained_with_a_table_per_segment_and_every_plot(tmp_path):
    report, page, _, images = rendered(tmp_path)
    assert "http" not in page  # nothing to fetch: it opens offline
    for segment in SEGMENTS:
        assert f"<h2>{segment} (" in page
    assert page.count("<table>") == len(SEGMENTS)
    for metric in METRICS:
        assert f"<th>{metric}</th>" in page
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(embedded) == 3 == len(images)
    for data in embedded:
        image = Image.open(io.BytesIO(base64.b64decode(data))).convert("L")
        assert image.size[0] > 400 and np.asarray(image).std() > 10  # drawn, not blank
    markdown = markdown_summary(report, None, "data/reports/eval_report/report.html")
    assert markdown.count("\n| ranker |") == 1 and "[" in markdown and "report.html" in markdown


def test_a_segment_with_too_few_users_is_flagged_everywhere_and_the_gate_will_not_decide_on_it(tmp_path):
    report = synthetic_report(1.5, min_users=500)  # 400 users: a clear win, but on fewer users than the minimum
    assert report.small_segments == {"all": 400}
    [warning] = report.warnings
    assert warning.startswith("TOO FEW USERS: the all segment has 400 test users (fewer than 500)")
    decision = gate(report, "ndcg@20", "all", challenger="2", champion="1")
    assert not decision.promote and "only 400 test users (fewer than 500), too few to replace the champion" in decision.reason
    first = gate(report, "ndcg@20", "all", challenger="1", champion=None)
    assert first.promote and "WARNING: decided on 400 test users" in first.reason
    assert report.to_json()["segments"]["all"]["too_few_users"] is True
    assert f"**{warning}**" in markdown_summary(report, decision, "report.html")
    page = render_html(report, decision, {}, plots(report, {"ranker": (np.array([1.0, 2.0]), np.array([0.0, 0.5]))}), "test report")
    assert f"<div class='warning'>{html.escape(warning)}</div>" in page and "all (400 users — too few users" in page
    # At or above the minimum: no warning, and the clear win is promoted.
    assert synthetic_report(1.5, min_users=400).warnings == []


def test_headless_chromium_shows_the_tables_and_plots(tmp_path):
    if shutil.which("chromium") is None:
        reason = "Debian's chromium is not installed (make test installs it when run as root)"
        if os.environ.get("REC_PIPELINE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + " (REC_PIPELINE_REQUIRE_BROWSER=1 makes this a failure)")
        pytest.skip(reason)
    _, _, path, _ = rendered(tmp_path)
    png = tmp_path / "report.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,4200",
         f"--screenshot={png}", path.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    shot = np.asarray(Image.open(png).convert("RGB"))
    assert shot.shape[:2] == (4200, 1400)
    # Plots and the shaded best cells are in colour: a page of text only, or broken images, would be grey.
    saturation = shot.max(axis=2).astype(int) - shot.min(axis=2)
    assert (saturation > 60).mean() > 0.01


def test_the_served_model_scores_the_split_in_its_own_item_rows_and_unknown_items_last(tmp_path):
    from rec_pipeline.ranker.export import OnnxRanker, write_bundle
    from rec_pipeline.ranker.model import window_season
    from rec_pipeline.report import onnx_scores
    from tests.test_export import N_ITEMS, trained_looking_model

    split = temporal_split(SAMPLE, CUT, catalog=CATALOG)  # items a..g
    season = window_season(pd.Timestamp(CUT, tz="UTC"), pd.Timestamp("2025-04-01", tz="UTC"))
    before_cut = SAMPLE[SAMPLE["ts"] < pd.Timestamp(CUT, tz="UTC")]
    # The model knows a, b, c and d (at rows far from the split's columns), not e, f or g.
    model_items = [f"x{i}" for i in range(N_ITEMS - 4)] + ["d", "c", "b", "a"]
    folder, _ = write_bundle(trained_looking_model(), model_items, tmp_path / "bundle")
    ranker = OnnxRanker.from_bundle(folder)
    scores = onnx_scores(ranker, split, before_cut, season)
    assert scores.shape == (len(split.test_rows), len(split.item_ids))
    lowest = np.finfo(np.float32).min
    assert (scores[:, 4:] == lowest).all() and (scores[:, :4] > lowest).all()
    # The same scores as asking the bundle directly, history a, b for u1 and b for u2, in the model's rows.
    row = {item: r + 1 for r, item in enumerate(model_items)}
    for position, history in enumerate([["a", "b"], ["b"]]):
        direct = ranker.score_rows(np.array([[row[i] for i in history]]), np.array([row[i] for i in "abcd"]), season)[0]
        assert np.allclose(scores[position, :4], direct, atol=1e-6)

    # A champion trained on another data set knows none of the items: everything scores lowest, nothing fails.
    stranger, _ = write_bundle(trained_looking_model(), [f"y{i}" for i in range(N_ITEMS)], tmp_path / "stranger")
    assert (onnx_scores(OnnxRanker.from_bundle(stranger), split, before_cut, season) == lowest).all()


def test_headline_ratios_divide_by_the_best_baseline_with_a_paired_interval():
    report = synthetic_report(1.5)  # "champion" and "random" stand in for two baselines
    [ratio] = headline_ratios(report, baselines=("random", "champion")).values()  # only the "all" segment exists
    ours = report.per_user["ranker", "all"]["ndcg@20"]
    best = max(("random", "champion"), key=lambda b: report.per_user[b, "all"]["ndcg@20"].mean())
    assert ratio["baseline"] == best == "champion"
    assert ratio["ratio"] == pytest.approx(ours.mean() / report.per_user[best, "all"]["ndcg@20"].mean())
    assert ratio["lo"] < ratio["ratio"] < ratio["hi"] and ratio["lo"] > 1  # a clear win, user by user
    # Paired: a model over itself is 1 in every resample, so its interval is exactly [1, 1].
    [same] = headline_ratios(report, model="champion", baselines=("champion",)).values()
    assert same["ratio"] == same["lo"] == same["hi"] == pytest.approx(1.0)
    page = render_html(report, None, {}, plots(report, {"ranker": (np.array([1.0, 2.0]), np.array([0.0, 0.5]))}), "t", ratios={"all_ndcg@20": ratio})
    assert "Headline ratios" in page and f"{ratio['ratio']:.3f}x" in page
    assert f"champion {ratio['theirs']:.4f}" in markdown_summary(report, None, "report.html", {"all_ndcg@20": ratio})
