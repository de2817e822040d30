"""The evaluation report as people read it: a self-contained HTML page (tables, plots embedded as PNG, the data and
code versions it describes) and a Markdown summary for the Dagster UI."""

from __future__ import annotations

import base64
import html
import json
import io
from pathlib import Path

import numpy as np

from rec_pipeline.report import KS, METRICS, SEGMENTS, GateDecision, Report, SegmentView

HEADLINE = [("all", "ndcg@20"), ("all", "recall@20"), ("cold_items", "recall@20"), ("cold_items", "ndcg@20"), ("new_users", "ndcg@20")]


def _cell(figure: dict) -> str:
    return f"{figure['mean']:.4f} [{figure['lo']:.4f}, {figure['hi']:.4f}]"


def _ratio_rows(ratios: dict[str, dict]) -> list[tuple[str, str, str, str]]:
    """(headline, ratio [CI], ranker's figure, best baseline's figure) per headline ratio."""
    return [
        (f"{r['metric']} on {r['segment']}", f"{r['ratio']:.3f}x [{r['lo']:.3f}, {r['hi']:.3f}]", f"{r['ours']:.4f}", f"{r['baseline']} {r['theirs']:.4f}")
        for r in ratios.values()
    ]


def markdown_summary(report: Report, decision: GateDecision | None, html_path: str, ratios: dict[str, dict] | None = None) -> str:
    present = [(s, m) for s, m in HEADLINE if report.segments.get(s)]
    header = "| model | " + " | ".join(f"{m} {s}" for s, m in present) + " |"
    lines = ["**Test split**: " + ", ".join(f"{s} {n:,} users" for s, n in report.segments.items()), "", header, "|---" * (len(present) + 1) + "|"]
    for model, segments in report.figures.items():
        lines.append(f"| {model} | " + " | ".join(_cell(segments[s]["metrics"][m]) for s, m in present) + " |")
    lines += ["", "Mean [95% bootstrap CI over users]."]
    if ratios:
        lines += ["", "**The ranker over the best baseline of each segment** (paired bootstrap CI):", "",
                  "| headline | ratio | ranker | best baseline |", "|---|---|---|---|"]
        lines += ["| " + " | ".join(row) + " |" for row in _ratio_rows(ratios)]
    lines += [line for warning in report.warnings for line in ("", f"**{warning}**")]
    if decision is not None:
        lines += ["", f"**Champion/challenger**: {decision.reason}"]
    lines += ["", f"Full report: `{html_path}`"]
    return "\n".join(lines)


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def plots(report: Report, score_samples: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, bytes]:
    """PNG bytes by file name: metric by segment per model, Recall@K curves, score distributions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report.figures)
    segments = [s for s in SEGMENTS if report.segments.get(s)]
    out = {}

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.8 / len(models)
    for ax, metric in zip(axes, ("ndcg@20", "recall@20")):
        for i, model in enumerate(models):
            figs = [report.figures[model][s]["metrics"][metric] for s in segments]
            means = np.array([f["mean"] for f in figs])
            errors = np.maximum(0, [[f["mean"] - f["lo"] for f in figs], [f["hi"] - f["mean"] for f in figs]])
            ax.bar(np.arange(len(segments)) + i * width, means, width, yerr=errors, capsize=2, label=model)
        ax.set_xticks(np.arange(len(segments)) + 0.4 - width / 2, segments)
        ax.set_title(f"{metric} by segment (95% CI)")
    axes[0].legend(fontsize=8)
    out["metric_by_segment.png"] = _png(fig)
    plt.close(fig)

    curve_segments = [s for s in ("all", "cold_items") if report.segments.get(s)]
    fig, axes = plt.subplots(1, len(curve_segments), figsize=(6.5 * len(curve_segments), 4.2), squeeze=False)
    for ax, segment in zip(axes[0], curve_segments):
        for model in models:
            curve = report.figures[model][segment]["recall_curve"]
            ax.plot(np.arange(1, len(curve) + 1), curve, label=model)
        ax.set_xlabel("K")
        ax.set_ylabel("Recall@K")
        ax.set_title(f"Recall@K, {segment}")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    out["recall_at_k.png"] = _png(fig)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(score_samples), figsize=(4.4 * len(score_samples), 3.6), squeeze=False)
    for ax, (model, (targets, others)) in zip(axes[0], score_samples.items()):
        bins = np.linspace(min(targets.min(), others.min()), max(targets.max(), others.max()), 40)
        ax.hist(others, bins=bins, density=True, alpha=0.55, label="other candidates")
        ax.hist(targets, bins=bins, density=True, alpha=0.55, label="test targets")
        ax.set_title(f"{model}: score distribution")
    axes[0][0].legend(fontsize=8)
    out["score_distributions.png"] = _png(fig)
    plt.close(fig)
    return out


def score_sample(scores: np.ndarray, view: SegmentView, limit: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the test targets, and of a random sample of the other candidates, in one segment."""
    rng = np.random.default_rng(seed)
    segment = scores[view.rows]
    is_target = np.zeros_like(view.candidates)
    for row, targets in enumerate(view.targets):
        is_target[row, targets] = True
    targets = segment[is_target & view.candidates]
    others = segment[view.candidates & ~is_target]
    if len(others) > limit:
        others = rng.choice(others, limit, replace=False)
    return targets.astype(np.float64), others.astype(np.float64)


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1500px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.6em; font-size: 12px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child, table.facts td { text-align: left; }
thead th { background: #f1f3f5; }
td.best { font-weight: bold; background: #e8f5e9; }
.ci { color: #777; font-size: 10px; }
.decision { padding: 0.8em 1em; border-left: 5px solid; margin: 1em 0; }
.promoted { border-color: #2e7d32; background: #e8f5e9; }
.kept { border-color: #b26a00; background: #fff4e5; }
.warning { padding: 0.8em 1em; border-left: 5px solid #c62828; background: #ffebee; margin: 1em 0; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
"""


def render_html(report: Report, decision: GateDecision | None, versions: dict[str, str], images: dict[str, bytes], title: str,
                search: dict | None = None, ratios: dict[str, dict] | None = None) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    parts += [f"<div class='warning'>{html.escape(warning)}</div>" for warning in report.warnings]
    if decision is not None:
        css = "promoted" if decision.promote else "kept"
        parts.append(f"<div class='decision {css}'><b>Champion/challenger</b>: {html.escape(decision.reason)}</div>")
    parts.append("<h2>What this report describes</h2><table class='facts'><tbody>")
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in versions.items()]
    parts.append("</tbody></table>")
    if ratios:
        parts.append("<h2>Headline ratios: the ranker over the best baseline of each segment</h2><table><thead><tr><th>headline</th>"
                     "<th>ratio [95% paired bootstrap CI]</th><th>ranker</th><th>best baseline</th></tr></thead><tbody>")
        parts += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in _ratio_rows(ratios)]
        parts.append("</tbody></table>")
    parts.append("<h2>Segments</h2><table class='facts'><thead><tr><th>segment</th><th>users</th><th>definition</th></tr></thead><tbody>")
    parts += [f"<tr><td>{s}</td><td>{n:,}</td><td>{html.escape(SEGMENTS[s])}</td></tr>" for s, n in report.segments.items()]
    parts.append("</tbody></table><p>Every cell: mean over users [95% bootstrap confidence interval]; best mean per column in bold. Coverage: distinct items in anyone's top K over the items that are a candidate for someone.</p>")
    for segment, users in report.segments.items():
        small = " — too few users for these figures to mean much" if segment in report.small_segments else ""
        parts.append(f"<h2>{segment} ({users:,} users{small})</h2>")
        if not users:
            parts.append("<p>No test user falls in this segment.</p>")
            continue
        parts.append(_segment_table(report, segment))
    for name, caption in (
        ("metric_by_segment.png", "Metric by segment per model"),
        ("recall_at_k.png", "Recall@K curves"),
        ("score_distributions.png", "Score distributions: test targets against the other candidates"),
    ):
        encoded = base64.b64encode(images[name]).decode()
        parts.append(f"<h2>{caption}</h2><img alt='{caption}' src='data:image/png;base64,{encoded}'>")
    if search is not None:
        parts.append(search_html(search))
    parts.append("</body></html>")
    return "\n".join(parts)


def _segment_table(report: Report, segment: str) -> str:
    models = list(report.figures)
    best = {metric: max(report.figures[m][segment]["metrics"][metric]["mean"] for m in models) for metric in METRICS}
    head = "".join(f"<th>{metric}</th>" for metric in METRICS) + "<th>coverage<br>@" + " / @".join(map(str, KS)) + "</th>"
    rows = []
    for model in models:
        figures = report.figures[model][segment]
        cells = []
        for metric in METRICS:
            f = figures["metrics"][metric]
            css = " class='best'" if f["mean"] == best[metric] else ""
            cells.append(f"<td{css}>{f['mean']:.4f}<br><span class='ci'>[{f['lo']:.4f}, {f['hi']:.4f}]</span></td>")
        cells.append("<td>" + " / ".join(f"{figures[f'coverage@{k}']:.3f}" for k in KS) + "</td>")
        rows.append(f"<tr><td>{model}</td>{''.join(cells)}</tr>")
    return f"<table><thead><tr><th>model</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def write_report(folder: Path, html_text: str, markdown: str, images: dict[str, bytes], figures: dict) -> Path:
    """report.html, summary.md, report.json and the plots as PNG files in `folder`, each written atomically."""
    import json

    from rec_pipeline.storage import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    files = {"report.html": html_text.encode(), "summary.md": markdown.encode(), "report.json": json.dumps(figures, indent=1).encode(), **images}
    for name, data in files.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(data)
    return folder / "report.html"


def search_markdown(search: dict) -> str:
    """The search section: each model's NDCG@10, MRR and Recall@100 per segment, mean [95% CI over searches]."""
    if not search.get("models"):
        return f"**Search**: {search.get('note', 'not evaluated')}"
    segments = list(search["searches"])
    lines = ["**Search** (test window, " + ", ".join(f"{s} {n:,} searches" for s, n in search["searches"].items()) + ")", "",
             "| model | segment | ndcg@10 | mrr | recall@100 |", "|---|---|---|---|---|"]
    for model, by_segment in search["models"].items():
        for segment in segments:
            cells = [f"{by_segment[segment][m]:.4f} [{search['intervals'][model][segment][m][0]:.4f}, {search['intervals'][model][segment][m][1]:.4f}]"
                     for m in ("ndcg@10", "mrr", "recall@100")]
            lines.append(f"| {model} | {segment} | " + " | ".join(cells) + " |")
    paired = search["paired"]
    lines += ["", f"Ratios: {search['ratios']}. Paired NDCG@10 difference, {paired['models'][0]} - {paired['models'][1]} on "
              f"{paired['segment']} ({paired['searches']:,} searches): {paired['mean_difference']:+.4f} [{paired['interval'][0]:+.4f}, {paired['interval'][1]:+.4f}]."]
    return "\n".join(lines)


def search_html(search: dict) -> str:
    parts = ["<h2>Search</h2>"]
    if not search.get("models"):
        return parts[0] + f"<p>{html.escape(search.get('note', 'not evaluated'))}</p>"
    parts.append("<p>Each search of the test window with what its session clicked, carted or bought after it (gains 2^grade - 1: "
                 "purchase 3, cart 2, click 1). lexical: tantivy BM25; dense: the item encoder's vectors in faiss HNSW; rrf: the two "
                 "fused by reciprocal rank; retrieval: the ranker's candidate set in retrieval order; mean [95% bootstrap CI over searches].</p>")
    for segment, n in search["searches"].items():
        parts.append(f"<h3>{segment} ({n:,} searches)</h3><table><thead><tr><th>model</th><th>ndcg@10</th><th>mrr</th><th>recall@100</th></tr></thead><tbody>")
        for model, by_segment in search["models"].items():
            cells = "".join(f"<td>{by_segment[segment][m]:.4f}<br><span class='ci'>[{search['intervals'][model][segment][m][0]:.4f}, "
                            f"{search['intervals'][model][segment][m][1]:.4f}]</span></td>" for m in ("ndcg@10", "mrr", "recall@100"))
            parts.append(f"<tr><td>{model}</td>{cells}</tr>")
        parts.append("</tbody></table>")
    paired = search["paired"]
    parts.append(f"<p>{html.escape(json.dumps(search['ratios']))}; paired NDCG@10 difference {paired['models'][0]} - {paired['models'][1]} on "
                 f"{paired['segment']}: {paired['mean_difference']:+.4f} [{paired['interval'][0]:+.4f}, {paired['interval'][1]:+.4f}]</p>")
    return "\n".join(parts)
