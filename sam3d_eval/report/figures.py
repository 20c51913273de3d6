"""Report figures: matplotlib on its Agg canvas (no pyplot, no global backend), embedded as SVG data URIs.

Every plot takes plain records (lists of dicts with the columns named in its docstring) and returns a
`FigureImage` whose `uri` is a ``data:image/svg+xml;base64,...`` string, so the HTML file needs no other file.
SVG keeps text sharp on screen and in print; the figures are a few kB each.

Every string drawn (titles, axis labels, tick labels, legend entries, annotations) goes through `plain`, so
names are shown as written: matplotlib would otherwise typeset text between two ``$`` as math (``$5 vs $10``)
or fail on it (a model named ``$\\frac{$``).
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

__all__ = ["FigureImage", "figure_uri", "interval_figure", "occlusion_figure", "phase_gap_figure", "plain",
           "stacked_bar_figure"]

# Colour-blind-safe (Okabe-Ito) series colours.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


@dataclass(frozen=True)
class FigureImage:
    """An embedded figure: `uri` (data URI), `alt` (what it shows, for screen readers), `caption`."""

    uri: str
    alt: str
    caption: str = ""


def plain(text: Any) -> str:
    """`text` drawn literally by matplotlib: each ``$`` becomes ``\\$``, so no math text is parsed (outside
    math mode ``$`` is the only special character; matplotlib draws ``\\$`` as ``$``, other backslashes as
    they are)."""
    return str(text).replace("$", r"\$")


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def figure_uri(fig, fmt: str = "svg") -> str:
    """`fig` (a matplotlib Figure on an Agg canvas) as a data URI (``svg`` or ``png``)."""
    buf = io.BytesIO()
    # svg.hashsalt + metadata Date=None make the SVG bytes reproducible run to run.
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "sam3d-eval", "svg.fonttype": "path"}):
        fig.savefig(buf, format=fmt, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _finite(*xs: Any) -> bool:
    return all(x is not None and isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def interval_figure(rows: Sequence[Mapping[str, Any]], *, value: str, low: str, high: str, label: str,
                    title: str, xlabel: str, zero: float | None = 0.0, colour_by: str | None = None) -> FigureImage:
    """A forest plot: one row per record, the `value` with its [`low`, `high`] interval, a reference line at
    `zero`. `colour_by` names a field whose value "A"/"B"/"=" colours the point (better side)."""
    rows = [r for r in rows if _finite(r.get(value))]
    fig = _new_figure(6.4, 0.45 * max(len(rows), 1) + 1.1)
    ax = fig.add_subplot(1, 1, 1)
    colour = {"A": COLOURS[1], "B": COLOURS[0], "=": "#777777"}
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        c = colour.get(r.get(colour_by), COLOURS[0]) if colour_by else COLOURS[0]
        if _finite(r.get(low), r.get(high)):
            ax.plot([r[low], r[high]], [y, y], color=c, lw=2)
        ax.plot([r[value]], [y], "o", color=c, ms=6)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([plain(r[label]) for r in reversed(rows)], fontsize=9)
    if zero is not None:
        ax.axvline(zero, color="#444444", lw=0.8, ls="--")
    ax.set_xlabel(plain(xlabel), fontsize=9)
    ax.set_title(plain(title), fontsize=10, loc="left")
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(axis="x", color="#dddddd", lw=0.6)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    text = "; ".join(f"{r[label]}: {r[value]:.3g}" + (f" [{r[low]:.3g}, {r[high]:.3g}]" if _finite(r.get(low), r.get(high)) else "")
                     for r in rows)
    return FigureImage(figure_uri(fig), f"{title}. {text}", title)


def occlusion_figure(series: Mapping[str, Sequence[Mapping[str, Any]]], *, title: str) -> FigureImage:
    """Accuracy per occlusion bin with Wilson intervals, one line per series.

    series: ``{name: records}`` with ``occlusion_bin``, ``n``, ``accuracy``, ``low``, ``high``
    (`evaluate.summary.occlusion_accuracy` rows of one domain).
    """
    fig = _new_figure(6.4, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    bins: list[str] = []
    for recs in series.values():
        for r in recs:
            if r["occlusion_bin"] not in bins:
                bins.append(r["occlusion_bin"])
    k = max(len(series), 1)
    alt = []
    for j, (name, recs) in enumerate(series.items()):
        by = {r["occlusion_bin"]: r for r in recs}
        xs, ys, lo, hi = [], [], [], []
        for i, b in enumerate(bins):
            r = by.get(b)
            if r is None or not r.get("n") or not _finite(r.get("accuracy")):
                continue
            xs.append(i + (j - (k - 1) / 2) * 0.08)
            ys.append(r["accuracy"])
            # Clamped: a Wilson end at 0/n or n/n can sit 1e-17 inside the estimate, which matplotlib refuses.
            lo.append(max(0.0, r["accuracy"] - r["low"]) if _finite(r.get("low")) else 0.0)
            hi.append(max(0.0, r["high"] - r["accuracy"]) if _finite(r.get("high")) else 0.0)
            alt.append(f"{name} {b}: {r['accuracy']:.2f} (n={r['n']})")
        c = COLOURS[j % len(COLOURS)]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="-o", color=c, capsize=3, lw=1.5, ms=5, label=plain(name))
    ax.set_xticks(range(len(bins)))
    ax.set_xticklabels([plain(b) for b in bins], fontsize=9)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("occlusion (fraction of the object hidden)", fontsize=9)
    ax.set_ylabel("accuracy", fontsize=9)
    ax.set_title(plain(title), fontsize=10, loc="left")
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    if len(series) > 1:
        ax.legend(fontsize=8, frameon=False)
    return FigureImage(figure_uri(fig), f"{title}. " + "; ".join(alt), title)


def phase_gap_figure(rows: Sequence[Mapping[str, Any]], *, metrics: Sequence[str], x: str = "label",
                     title: str) -> FigureImage:
    """The gap figure across curriculum phases (or data-engine rounds): one panel per metric, the estimate
    with its interval at each step, in the given order.

    rows: records with ``metric``, ``figure``, ``estimate``, ``low``, ``high`` and the step label `x`.
    """
    metrics = [m for m in metrics if any(r["metric"] == m for r in rows)]
    n = max(len(metrics), 1)
    fig = _new_figure(3.3 * n, 3.0)
    alt = []
    for j, m in enumerate(metrics):
        ax = fig.add_subplot(1, n, j + 1)
        recs = [r for r in rows if r["metric"] == m]
        xs = list(range(len(recs)))
        ys = [r["estimate"] if _finite(r.get("estimate")) else math.nan for r in recs]
        lo = [r["estimate"] - r["low"] if _finite(r.get("estimate"), r.get("low")) else 0.0 for r in recs]
        hi = [r["high"] - r["estimate"] if _finite(r.get("estimate"), r.get("high")) else 0.0 for r in recs]
        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="-o", color=COLOURS[j % len(COLOURS)], capsize=3, lw=1.5, ms=5)
        figure_name = recs[0].get("figure", "") if recs else ""
        ax.axhline(1.0 if figure_name == "gap_ratio" else 0.0, color="#444444", lw=0.8, ls="--")
        ax.set_xticks(xs)
        ax.set_xticklabels([plain(r[x]) for r in recs], rotation=35, ha="right", fontsize=8)
        ax.set_title(plain(f"{m}: {figure_name}"), fontsize=9, loc="left")
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", color="#dddddd", lw=0.6)
        alt += [f"{m} {r[x]}: {r['estimate']:.3g}" for r in recs if _finite(r.get("estimate"))]
    fig.suptitle(plain(title), fontsize=10, x=0.01, ha="left")
    return FigureImage(figure_uri(fig), f"{title}. " + "; ".join(alt), title)


def stacked_bar_figure(rows: Sequence[Mapping[str, Any]], *, x: str, stack: str, value: str, title: str,
                       ylabel: str, order: Sequence[str] = (), totals: Mapping[Any, str] | None = None) -> FigureImage:
    """Stacked bars: one bar per distinct `x` (in first-seen order), one segment per distinct `stack` (in
    `order`, then first-seen), heights from `value` (missing or non-finite = 0). `totals` maps an x value to a
    label printed above its bar (e.g. the number of ratings; "none" for an empty bar).

    rows: records with the fields `x`, `stack` and `value` (e.g. the rubric's failure_mix: round, mode, share).
    """
    xs = list(dict.fromkeys(r[x] for r in rows))
    keys = list(dict.fromkeys([*order, *(r[stack] for r in rows)]))
    val = {(r[x], r[stack]): (float(r[value]) if _finite(r.get(value)) else 0.0) for r in rows}
    fig = _new_figure(max(4.0, 0.7 * len(xs) + 3.2), 3.2)
    ax = fig.add_subplot(1, 1, 1)
    bottom = [0.0] * len(xs)
    for j, k in enumerate(keys):
        h = [val.get((xv, k), 0.0) for xv in xs]
        ax.bar(range(len(xs)), h, bottom=bottom, width=0.6, color=COLOURS[j % len(COLOURS)], label=plain(k),
               edgecolor="white", lw=0.5)
        bottom = [b + v for b, v in zip(bottom, h)]
    for i, xv in enumerate(xs):
        if totals and xv in totals:
            ax.text(i, bottom[i], plain(totals[xv]), ha="center", va="bottom", fontsize=7, color="#444444")
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels([plain(v) for v in xs], fontsize=8)
    ax.set_xlabel(plain(x), fontsize=9)
    ax.set_ylabel(plain(ylabel), fontsize=9)
    ax.set_ylim(0, max([*bottom, 1e-9]) * 1.15)
    ax.set_title(plain(title), fontsize=10, loc="left")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="#dddddd", lw=0.6)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    alt = [f"{x} {xv}: " + ", ".join(f"{k} {val.get((xv, k), 0.0):.2f}" for k in keys) for xv in xs]
    return FigureImage(figure_uri(fig), f"{title}. " + "; ".join(alt), title)
