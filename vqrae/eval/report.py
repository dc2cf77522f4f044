"""HTML reports of evaluations: one self-contained page, images as files beside it.

:func:`write_recon_report` turns a :class:`vqrae.eval.recon.ReconResult` into ``report.html``
with the headline metrics, notes on their validity, a code-usage plot (sorted code frequencies,
log scale) and a PSNR histogram, grids of originals beside reconstructions (the first images and
the worst by PSNR, each labelled with its PSNR / SSIM / LPIPS) and a sortable per-image table
(worst first). Images live in ``images/`` and plots in ``plots/`` next to the page and are linked
relatively, so the folder can be moved or zipped as a whole. Every file is written atomically.

The page skeleton (:func:`render_page`, :data:`CSS`) and the plotting helpers are shared with the
semantic-retention page (:mod:`vqrae.tokenizer.semantic_eval`).
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from vqrae.utils.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vqrae.eval.recon import Example, ImageScore, ReconResult

__all__ = [
    "CSS",
    "render_page",
    "save_figure",
    "save_png",
    "write_recon_report",
]

REPORT_NAME = "report.html"
IMAGES_DIR = "images"
PLOTS_DIR = "plots"
PIXELATED_BELOW = 128  # show small images with crisp pixels when they are scaled up

CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f6f7f9; --card:#fff;
        --accent:#3559e0; --bad:#c4320a; --good:#067647; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
       font:14px/1.45 -apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue",
       Arial, sans-serif; }
main { max-width:1240px; margin:0 auto; padding:28px 32px 48px; }
header h1 { font-size:22px; margin:0 0 4px; letter-spacing:-0.01em; }
header .sub { color:var(--muted); margin:0 0 18px; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
              font-size:12.5px; }
h2 { font-size:16px; margin:34px 0 10px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h2 small { font-weight:normal; color:var(--muted); font-size:13px; margin-left:8px; }
table.headline { border-collapse:separate; border-spacing:10px 0; margin:0 -10px; }
table.headline th { text-align:left; font-weight:600; color:var(--muted); font-size:12px;
                    letter-spacing:.02em; padding:0 14px 4px; }
table.headline td { background:var(--card); border:1px solid var(--line); border-radius:10px;
                    padding:10px 14px; font-size:22px; font-weight:600; min-width:118px;
                    font-variant-numeric: tabular-nums; }
table.headline td span { display:block; font-size:11.5px; font-weight:normal;
                         color:var(--muted); margin-top:2px; }
.notes { background:#fffaeb; border:1px solid #fedf89; border-radius:10px; padding:10px 16px;
         margin:18px 0 0; color:#7a4a05; }
.notes li { margin:2px 0; }
.plots { display:grid; grid-template-columns:1fr 1fr; gap:16px; }
.plots figure { margin:0; background:var(--card); border:1px solid var(--line);
                border-radius:10px; padding:10px; }
.plots img { width:100%; display:block; }
.plots figcaption { color:var(--muted); font-size:12.5px; padding:6px 4px 0; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(264px, 1fr)); gap:12px; }
.pair { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:8px; }
.pair .imgs { display:grid; grid-template-columns:1fr 1fr; gap:6px; }
.pair img { width:100%; aspect-ratio:1; object-fit:cover; display:block; border-radius:4px;
            background:#eee; }
.pair img.px { image-rendering: pixelated; }
.pair .cap { display:grid; grid-template-columns:1fr 1fr; gap:6px; color:var(--muted);
             font-size:11px; text-transform:uppercase; letter-spacing:.04em; margin:3px 0 4px; }
.pair .name { font-weight:600; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.pair .m { color:var(--muted); font-size:12.5px; font-variant-numeric: tabular-nums; }
.pair.worst { border-color:#f5c6b8; }
table.data { border-collapse:collapse; width:100%; background:var(--card);
             border:1px solid var(--line); border-radius:10px; overflow:hidden; }
table.data th, table.data td { padding:6px 12px; border-bottom:1px solid var(--line);
                               text-align:right; font-variant-numeric: tabular-nums; }
table.data th { background:#f0f2f5; cursor:pointer; user-select:none; white-space:nowrap;
                font-size:12.5px; }
table.data th:after { content:" \\2195"; color:#98a2b3; }
table.data th.asc:after { content:" \\2191"; color:var(--accent); }
table.data th.desc:after { content:" \\2193"; color:var(--accent); }
table.data td.l, table.data th.l { text-align:left; }
table.data tr:nth-child(even) td { background:#fafbfc; }
table.data tr:hover td { background:#eef2ff; }
.scroll { max-height:520px; overflow:auto; border-radius:10px; }
.barbox { display:inline-block; width:64px; margin-right:10px; vertical-align:middle;
          text-align:left; }
.bar { display:inline-block; height:8px; border-radius:4px; background:var(--accent);
       opacity:.4; vertical-align:middle; }
.muted { color:var(--muted); }
footer { margin-top:40px; color:var(--muted); font-size:12.5px; border-top:1px solid var(--line);
         padding-top:12px; }
"""

SORT_JS = """
document.querySelectorAll('table.data').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0], rows = Array.from(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v || a.cells[col].textContent;
        var y = b.cells[col].dataset.v || b.cells[col].textContent;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


# ---------------------------------------------------------------------------- shared helpers
def esc(value: Any) -> str:
    """HTML-escape ``str(value)``."""
    return html.escape(str(value), quote=True)


def fmt(value: float | None, digits: int = 3, unit: str = "") -> str:
    """A number for display; ``None`` / non-finite as an em dash."""
    if value is None or not np.isfinite(value):
        return "&mdash;"
    return f"{value:.{digits}f}{unit}"


def render_page(title: str, body: str) -> str:
    """A complete HTML document with the shared CSS and the table sorter."""
    return (
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
        f"{body}\n</main>\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


def write_text(path: Path, text: str) -> Path:
    """Write a text file atomically (creating its folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_png(array: np.ndarray, path: Path) -> Path:
    """Write an (H, W, 3) uint8 array as PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(array))
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def new_figure(width: float = 6.4, height: float = 3.4) -> Figure:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def style_axes(ax: Any) -> None:
    """Light, uncluttered axes."""
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color("#98a2b3")
    ax.tick_params(colors="#475467", labelsize=8)
    ax.grid(True, color="#eaecf0", linewidth=0.6)
    ax.set_axisbelow(True)


def save_figure(fig: Figure, path: Path) -> Path:
    """Write a figure as PNG, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))


def safe_stem(name: str, limit: int = 60) -> str:
    """A file-name-safe version of a record name."""
    stem = os.path.splitext(name.replace("/", "__"))[0]
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)
    return cleaned[:limit] or "image"


# ---------------------------------------------------------------------------- plots
def plot_code_usage(counts: np.ndarray, path: Path) -> Path:
    """Sorted code frequencies on a log scale, with the uniform level and the used count."""
    fig = new_figure()
    ax = fig.add_subplot()
    style_axes(ax)
    k = counts.size
    total = max(int(counts.sum()), 1)
    freq = np.sort(counts)[::-1] / total
    used = int((counts > 0).sum())
    ranks = np.arange(1, k + 1)
    if used:
        ax.fill_between(ranks[:used], freq[:used], step="post", color="#3559e0", alpha=0.25)
        ax.step(ranks[:used], freq[:used], where="post", color="#3559e0", linewidth=1.2)
        ax.set_yscale("log")
    ax.axhline(1.0 / k, color="#067647", linestyle="--", linewidth=1, label=f"uniform (1/{k})")
    if used < k:
        ax.axvspan(used + 0.5, k + 0.5, color="#c4320a", alpha=0.07, label="never used")
    if k > 100:  # a Zipf-style view: the head and the tail of the distribution both show
        ax.set_xscale("log")
    ax.set_xlim(0.8 if k > 100 else 0.5, k + 0.5)
    ax.set_xlabel("code rank (most frequent first)", fontsize=9)
    ax.set_ylabel("frequency", fontsize=9)
    ax.set_title(
        f"{used:,} of {k:,} codes used ({100.0 * used / k:.1f}%) over {total:,} tokens",
        fontsize=10,
        loc="left",
    )
    ax.legend(fontsize=8, frameon=False, loc="upper right")
    return save_figure(fig, path)


def plot_histogram(
    values: Sequence[float], path: Path, xlabel: str, title: str, colour: str = "#3559e0"
) -> Path:
    """A histogram with its mean marked."""
    fig = new_figure()
    ax = fig.add_subplot()
    style_axes(ax)
    data = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if data.size:
        bins = int(np.clip(np.sqrt(data.size) * 2, 5, 40))
        ax.hist(data, bins=bins, color=colour, alpha=0.75, edgecolor="white", linewidth=0.6)
        mean = float(data.mean())
        ax.axvline(mean, color="#1d2330", linestyle="--", linewidth=1)
        ax.annotate(
            f"mean {mean:.2f}",
            (mean, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, 2),
            textcoords="offset points",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel("images", fontsize=9)
    ax.set_title(title, fontsize=10, loc="left")
    return save_figure(fig, path)


# ---------------------------------------------------------------------------- recon report
def _headline(metrics: dict[str, Any]) -> str:
    usage = metrics.get("codebook_usage")
    cells = [
        ("PSNR", fmt(metrics.get("psnr"), 2), "dB, higher is better"),
        ("SSIM", fmt(metrics.get("ssim"), 4), "higher is better"),
        ("LPIPS", fmt(metrics.get("lpips"), 4), "VGG, lower is better"),
        ("rFID", fmt(metrics.get("rfid"), 2), f"n = {metrics.get('num_images', 0):,}"),
        ("Codebook usage", fmt(None if usage is None else 100 * usage, 1, "%"), "of codes used"),
        ("Perplexity", fmt(metrics.get("codebook_perplexity"), 1), "of code distribution"),
        ("Images", f"{metrics.get('num_images', 0):,}", f"{metrics.get('num_failed', 0)} failed"),
    ]
    head = "".join(f"<th>{esc(name)}</th>" for name, _, _ in cells)
    body = "".join(f"<td>{value}<span>{esc(note)}</span></td>" for _, value, note in cells)
    return f"<table class='headline'><tr>{head}</tr><tr>{body}</tr></table>"


def _notes(metrics: dict[str, Any]) -> str:
    notes = []
    if metrics.get("rfid_note"):
        notes.append(esc(metrics["rfid_note"]))
    capped = metrics.get("num_psnr_capped") or 0
    if capped:
        notes.append(
            f"{capped} image(s) reconstructed exactly: their PSNR is capped at "
            f"{metrics.get('psnr_cap_db', 100):g} dB."
        )
    failed = metrics.get("num_failed") or 0
    if failed:
        notes.append(f"{failed} item(s) could not be read and are not scored (listed below).")
    if not notes:
        return ""
    return "<ul class='notes'>" + "".join(f"<li>{n}</li>" for n in notes) + "</ul>"


def _example_files(
    example: Example, out_dir: Path, written: dict[int, tuple[str, str]]
) -> tuple[str, str]:
    """Write (once) the original / reconstruction PNGs of an example; relative paths."""
    index = example.score.index
    if index not in written:
        stem = f"{index:06d}_{safe_stem(example.score.name)}"
        orig, recon = f"{IMAGES_DIR}/{stem}_orig.png", f"{IMAGES_DIR}/{stem}_recon.png"
        save_png(example.original, out_dir / orig)
        save_png(example.reconstruction, out_dir / recon)
        written[index] = (orig, recon)
    return written[index]


def _pair_card(example: Example, files: tuple[str, str], worst: bool) -> str:
    s = example.score
    px = " class='px'" if example.original.shape[0] < PIXELATED_BELOW else ""
    label = f" &middot; {esc(s.label)}" if s.label else ""
    return (
        f"<div class='pair{' worst' if worst else ''}'>"
        f"<div class='imgs'><img{px} src='{esc(files[0])}' alt='original' loading='lazy'>"
        f"<img{px} src='{esc(files[1])}' alt='reconstruction' loading='lazy'></div>"
        "<div class='cap'><div>original</div><div>reconstruction</div></div>"
        f"<div class='name' title='{esc(s.name)}'>{esc(s.name)}</div>"
        f"<div class='m'>PSNR {fmt(s.psnr, 2)} dB &middot; SSIM {fmt(s.ssim, 3)} &middot; "
        f"LPIPS {fmt(s.lpips, 3)}{label}</div></div>"
    )


def _grid(
    examples: Sequence[Example], out_dir: Path, written: dict[int, tuple[str, str]], worst: bool
) -> str:
    cards = [_pair_card(e, _example_files(e, out_dir, written), worst) for e in examples]
    return "<div class='grid'>" + "".join(cards) + "</div>"


def _score_table(scores: Sequence[ImageScore], max_rows: int) -> str:
    ordered = sorted(scores, key=lambda s: (s.psnr, s.index))[:max_rows]
    with_labels = any(s.label for s in scores)
    lo = min((s.psnr for s in scores), default=0.0)
    hi = max((s.psnr for s in scores), default=1.0)
    rows = []
    for rank, s in enumerate(ordered, 1):
        width = 4 + int(60 * (s.psnr - lo) / (hi - lo)) if hi > lo else 64
        label = f"<td class='l'>{esc(s.label or '')}</td>" if with_labels else ""
        rows.append(
            f"<tr><td>{rank}</td><td class='l mono' title='{esc(s.name)}'>{esc(s.name)}</td>"
            f"{label}<td data-v='{s.psnr:.6f}'><span class='barbox'><span class='bar' "
            f"style='width:{width}px'></span></span>{s.psnr:.2f}</td><td>{s.ssim:.4f}</td>"
            f"<td>{s.lpips:.4f}</td></tr>"
        )
    head = (
        "<tr><th>#</th><th class='l'>image</th>"
        + ("<th class='l'>label</th>" if with_labels else "")
        + "<th>PSNR (dB)</th><th>SSIM</th><th>LPIPS</th></tr>"
    )
    more = ""
    if len(scores) > max_rows:
        more = (
            f"<p class='muted'>Showing the {max_rows:,} worst of {len(scores):,} images; all "
            "are in <a href='per_image.csv'>per_image.csv</a>.</p>"
        )
    return (
        f"<div class='scroll'><table class='data'><thead>{head}</thead><tbody>"
        + "".join(rows)
        + f"</tbody></table></div>{more}"
    )


def _failures(failures: Sequence[tuple[str, str]]) -> str:
    if not failures:
        return ""
    rows = "".join(
        f"<tr><td class='l mono'>{esc(n)}</td><td class='l'>{esc(e)}</td></tr>" for n, e in failures
    )
    return (
        f"<h2>Unreadable inputs<small>{len(failures)} not scored</small></h2>"
        "<table class='data'><thead><tr><th class='l'>item</th><th class='l'>reason</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _footer(metrics: dict[str, Any]) -> str:
    timing = metrics.get("timing") or {}
    parts = [
        f"{k.removesuffix('_s')} {v:.1f} s"
        for k, v in timing.items()
        if k.endswith("_s") and k != "images_per_s" and v is not None
    ]
    speed = timing.get("images_per_s")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<footer>"
        f"<div><b>Protocol.</b> {esc(metrics.get('protocol', ''))}.</div>"
        f"<div><b>Timing.</b> {esc(', '.join(parts))}"
        + (f" &middot; {speed:.2f} images/s" if speed else "")
        + f" &middot; {esc(metrics.get('device', ''))}, precision "
        f"{esc(metrics.get('precision', ''))}, batch {esc(metrics.get('batch_size', ''))}.</div>"
        f"<div>Generated by vqrae eval-recon, {stamp}. Numbers: "
        "<a href='metrics.json'>metrics.json</a>, <a href='per_image.csv'>per_image.csv</a>."
        "</div></footer>"
    )


def write_recon_report(
    result: ReconResult, out_dir: str | os.PathLike[str], max_table_rows: int = 1000
) -> Path:
    """Write ``report.html`` with its images and plots into ``out_dir``; returns its path.

    Args:
        result: the evaluation.
        out_dir: the report folder (``images/`` and ``plots/`` are created inside).
        max_table_rows: per-image rows shown (the worst ones; the CSV has them all).
    """
    out = Path(out_dir)
    m = result.metrics
    plots = []
    if result.code_counts.size:
        plot_code_usage(result.code_counts, out / PLOTS_DIR / "code_usage.png")
        plots.append(
            (
                f"{PLOTS_DIR}/code_usage.png",
                f"Code usage: perplexity {fmt(m.get('codebook_perplexity'), 1)} of "
                f"{m.get('codebook_size', 0):,} codes ({m.get('tokens_per_image', 0)} tokens "
                "per image). A flat curve near the green line is a fully used codebook.",
            )
        )
    plot_histogram(
        [s.psnr for s in result.scores],
        out / PLOTS_DIR / "psnr_hist.png",
        "PSNR (dB)",
        "Per-image PSNR",
    )
    plots.append((f"{PLOTS_DIR}/psnr_hist.png", "Distribution of per-image PSNR."))
    figures = "".join(
        f"<figure><img src='{esc(src)}' alt=''><figcaption>{cap}</figcaption></figure>"
        for src, cap in plots
    )
    written: dict[int, tuple[str, str]] = {}
    size = m.get("image_size")
    subtitle = (
        f"<code>{esc(m.get('model', ''))}</code> on <code>{esc(m.get('data') or '')}</code>"
        f" &middot; {m.get('num_images', 0):,} images at {size}&times;{size}"
    )
    body = [
        f"<header><h1>Reconstruction report</h1><p class='sub'>{subtitle}</p>",
        _headline(m),
        _notes(m),
        "</header>",
        f"<h2>Codebook and PSNR</h2><div class='plots'>{figures}</div>",
    ]
    if result.first:
        body.append(
            f"<h2>First {len(result.first)} images<small>original | reconstruction</small></h2>"
        )
        body.append(_grid(result.first, out, written, worst=False))
    if result.worst:
        body.append(f"<h2>Worst {len(result.worst)} by PSNR<small>worst first</small></h2>")
        body.append(_grid(result.worst, out, written, worst=True))
    if result.scores:
        body.append("<h2>Per-image metrics<small>worst PSNR first; click a header to sort</small>")
        body.append("</h2>" + _score_table(result.scores, max_table_rows))
    body.append(_failures(result.failures))
    body.append(_footer(m))
    title = f"Reconstruction report: {m.get('model', '')}"
    return write_text(out / REPORT_NAME, render_page(title, "\n".join(body)))
