"""Number formatting and table cells for the report, and the metric definitions its methods section prints."""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

__all__ = ["GAP_PART_DEFINITIONS", "METRIC_DEFINITIONS", "VISIBILITY_PARTS", "cell", "definition", "fmt", "fmt_ci",
           "fmt_fixed", "fmt_p", "fmt_rate", "gap_counts", "gap_share", "has_decomposition", "mix_words", "no_gap",
           "visibility_change", "visibility_columns", "visibility_label", "visibility_part", "visibility_strata"]

# The definitions of docs/definitions.md, in words; keyed by column-name prefix (the longest matching prefix wins).
METRIC_DEFINITIONS = {
    "chamfer_l2": "pytorch3d Chamfer-L2: per point the SQUARED Euclidean distance to the nearest point of the other "
                  "sample, mean over each sample, the two directions summed (lower is better).",
    "chamfer_l1": "CD-L1 (ZeroShape/SyncDreamer): unsquared distances, the mean of the two directional means "
                  "(lower is better).",
    "chamfer_l1_occnet": "Occupancy Networks Chamfer-L1: (accuracy + completeness) / 2 with unsquared distances.",
    "chamfer_l2_occnet": "Occupancy Networks Chamfer-L2: (accuracy + completeness) / 2 with squared distances.",
    "fscore@": "F-score at threshold tau (fraction of the normalised unit cube's side): 2PR/(P+R) with precision "
               "= share of predicted points within tau of the GT (Euclidean, strict <), recall likewise from GT.",
    "precision@": "Share of predicted surface points closer than tau to the ground truth.",
    "recall@": "Share of ground-truth surface points closer than tau to the prediction.",
    "normal_consistency": "Mean over both directions of |cos| between a sampled point's face normal and its nearest "
                          "neighbour's (higher is better).",
    "normal_consistency_signed": "As normal consistency with the signed cosine (Mesh R-CNN).",
    "volume_iou": "Volume IoU on a regular grid (winding-number inside test).",
    "emd": "Earth mover's distance on equal-size subsamples (exact assignment; lower is better).",
    "lpips": "LPIPS v0.1 on rendered views of aligned prediction and GT (lower is better).",
    "psnr": "PSNR over the union of the two silhouettes of the rendered views (dB, higher is better).",
    "ssim": "SSIM over the union of the silhouettes of the rendered views (higher is better).",
    "silhouette_iou": "IoU of the rendered silhouettes.",
    "accuracy": "Occlusion-stratified accuracy: share of samples with F-score@0.05 >= the threshold (0.5 by "
                "default); failed samples count as not accurate; Wilson 95% intervals.",
    "gap_ratio": "Gap ratio m(real) / m(synthetic) for a lower-is-better metric (1 = no gap).",
    "relative_drop": "Relative drop 1 - m(real) / m(synthetic) for a higher-is-better metric (0 = no gap).",
    "texture_degradation": "LPIPS(real) / LPIPS(synthetic) - 1.",
    "gap_matched": "Covariate-matched gap: the same figure with the synthetic side reweighted to the real side's "
                   "cells (occlusion bin x category by default): for a ratio, mean_real / sum_c w_c mean_syn_c, w_c "
                   "the real samples' share of cell c; real cells without a synthetic sample are left out of both "
                   "(coverage = the real share kept). What is left of the gap at matched covariates: appearance, "
                   "and anything else the cells do not hold fixed (GT wear included).",
    "gap_covariate": "Covariate part of the gap = raw figure - matched figure (figure units): what the occlusion "
                     "and category mix accounts for; its share of the raw excess is (raw - matched) / (raw - no "
                     "gap), no gap = 1 for a ratio and 0 for a drop.",
    "gap_wear_free": "Wear-free gap: the figure with each real value replaced by the same prediction scored "
                     "against the sample's unworn GT (the wear shift dents and bends the real GT).",
    "gap_wear": "Wear part of the gap = raw figure - wear-free figure (figure units): how much of the gap is the "
                "worn GT rather than the model. Every part's interval comes from the raw figure's own resamples "
                "(twin pairs on a paired benchmark).",
    "chamfer_acc_visible": "Accuracy on the visible part: mean SQUARED distance (as chamfer_l2) to the GT of the "
                           "predicted points whose nearest GT sample the input camera sees (lower is better).",
    "chamfer_comp_": "Completeness of one part of the GT surface: mean SQUARED distance (as chamfer_l2) from the "
                     "part's GT samples to the prediction (lower is better). Parts, from the input camera: visible; "
                     "self_hidden (back-facing, behind the object itself, or out of view); occluder_hidden (facing "
                     "the camera but covered by something else in the visible mask).",
}
# `definition` of a recall column of the visibility split (``recall@{tau}_{part}``), which "recall@" would
# otherwise take.
VISIBILITY_RECALL_DEFINITION = ("Recall of one part of the GT surface (visible, self_hidden, occluder_hidden): share "
                                "of the part's GT samples closer than tau to the prediction (higher is better).")
# The parts of the visibility split, in label order: `evaluate.protocols.VISIBILITY_PARTS`, restated here because
# the report layer does not import the evaluation layer (tests/test_report_visibility.py checks they agree).
VISIBILITY_PARTS = ("visible", "self_hidden", "occluder_hidden")
_VISIBILITY_RECALL = re.compile(r"^recall@(.+)_(" + "|".join(VISIBILITY_PARTS) + r")$")
GAP_PART_DEFINITIONS = ("gap_matched", "gap_covariate", "gap_wear_free", "gap_wear")


def definition(metric: str) -> str:
    """The definition of a metric column: its own entry, else the longest key it starts with, else ''."""
    if metric in METRIC_DEFINITIONS:
        return METRIC_DEFINITIONS[metric]
    if _VISIBILITY_RECALL.match(metric):
        return VISIBILITY_RECALL_DEFINITION
    keys = sorted((k for k in METRIC_DEFINITIONS if metric.startswith(k)), key=len, reverse=True)
    return METRIC_DEFINITIONS[keys[0]] if keys else ""


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt(v: Any, digits: int = 4, *, missing: str = "-") -> str:
    """A number for a table: `digits` decimals, scientific below 1e-2, ``inf`` / ``-inf`` as such, `missing`
    for None and NaN. The one number format of every table the suite prints (HTML and terminal)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if not _finite(v):
        return missing
    if v != 0 and abs(v) < 1e-2:
        return f"{v:.{max(digits - 1, 1)}e}"
    return f"{v:.{digits}f}"


def fmt_ci(v: Any, lo: Any, hi: Any, digits: int = 4, *, missing: str = "-") -> str:
    """``value [low, high]``, or the value alone without an interval."""
    if not (_finite(lo) and _finite(hi)):
        return fmt(v, digits, missing=missing)
    return f"{fmt(v, digits, missing=missing)} [{fmt(lo, digits)}, {fmt(hi, digits)}]"


def fmt_p(p: Any) -> str:
    """A p-value: '<1e-4' below 1e-4, else 3 significant digits."""
    if not _finite(p):
        return "-"
    return "<1e-4" if p < 1e-4 else f"{p:.3g}"


def fmt_fixed(v: Any, digits: int = 3) -> str:
    """A number with a fixed count of decimals (rates, agreements, Elo), '-' when missing."""
    return f"{v:.{digits}f}" if _finite(v) else "-"


def fmt_rate(rate: Any, low: Any = None, high: Any = None, digits: int = 3) -> str:
    """A proportion with 3 decimals and its interval, ``0.250 [0.089, 0.532]`` ('-' when missing)."""
    return fmt_fixed(rate, digits) + (f" [{fmt_fixed(low, digits)}, {fmt_fixed(high, digits)}]"
                                      if _finite(low) and _finite(high) else "")


def gap_counts(row: Any) -> str:
    """The samples behind a `domain_gap` row: ``synthetic/real``, plus ``(k pairs)`` when it was paired."""
    text = f"{row['n_synthetic']}/{row['n_real']}"
    return text + (f" ({row['n_pairs']} pairs)" if row.get("design") == "paired" else "")


def no_gap(figure: str) -> float:
    """The value of a gap figure that means no gap: 1 for ``gap_ratio``, 0 for a drop or a degradation."""
    return 1.0 if figure == "gap_ratio" else 0.0


def gap_share(row: Any, part: str) -> float | None:
    """A part of a `domain_gap` row's figure as a share of its raw excess, row[part] / (estimate - no gap).

    Args:
        row: a `domain_gap` record (figure, estimate, low, high and the part's column).
        part: the part's column, e.g. ``covariate`` (= raw - matched) or ``wear`` (= raw - wear_free).

    Returns:
        The share (1 = the whole excess; above 1 or below 0 when the part overshoots), or None when a figure
        is missing or the raw interval includes no gap (a share of a gap that may not exist means nothing).
    """
    value, est, none = row.get(part), row.get("estimate"), no_gap(row.get("figure"))
    if not (_finite(value) and _finite(est)) or est == none:
        return None
    if _finite(row.get("low")) and _finite(row.get("high")) and row["low"] <= none <= row["high"]:
        return None
    return float(value) / (float(est) - none)


def has_decomposition(row: Any) -> bool:
    """Whether a `domain_gap` row carries a covariate-matched or a wear-free figure."""
    return _finite(row.get("matched")) or _finite(row.get("wear_free"))


def mix_words(matching: Any) -> str:
    """The covariates of a matched figure in words: ``"occlusion_bin x category"`` -> "occlusion-and-category"."""
    names = [("occlusion" if m == "occlusion_bin" else m).strip() for m in str(matching or "").split(" x ") if m.strip()]
    return "-and-".join(names) if names else "covariate"


def cell(text: str, cls: str = "", title: str = "") -> dict[str, str]:
    """A table cell with a CSS class (``num``, ``worse``, ``better``, ``muted``) and a hover title."""
    return {"text": text, "cls": cls, "title": title}


# ----------------------------------------------------------------------------------------------------------
# the visibility split (protocol metric "visibility"; docs/definitions.md, "Visible and hidden surfaces")

_STRATUM_ORDER = {"all": 0, "domain": 1, "occlusion_bin": 2}
_DOMAIN_ORDER = {"all": 0, "synthetic": 1, "real": 2}


def _tau_key(tau: str) -> tuple[float, str]:
    try:
        return float(tau), tau
    except ValueError:
        return math.inf, tau


def visibility_columns(metrics: Iterable[str]) -> list[str]:
    """The visibility split's columns among `metrics`, in the order of `Protocol.visibility_columns`:
    ``chamfer_acc_visible``, ``chamfer_comp_{part}``, then ``recall@{tau}_{part}`` (by tau, then part).

    Args:
        metrics: metric names (a run's summary metrics, a comparison's table metrics; repeats allowed).

    Returns:
        The visibility columns present, [] when there is none.
    """
    names = set(metrics)
    out = [m for m in ["chamfer_acc_visible"] + [f"chamfer_comp_{p}" for p in VISIBILITY_PARTS] if m in names]
    taus = sorted({m.group(1) for m in map(_VISIBILITY_RECALL.match, names) if m}, key=_tau_key)
    return out + [f"recall@{t}_{p}" for t in taus for p in VISIBILITY_PARTS if f"recall@{t}_{p}" in names]


def visibility_part(metric: str) -> tuple[str, str] | None:
    """What a visibility column measures and on which part: ``chamfer_acc_visible`` -> ("accuracy",
    "visible"), ``chamfer_comp_self_hidden`` -> ("completeness", "self_hidden"), ``recall@0.05_visible`` ->
    ("recall@0.05", "visible"); None for another column."""
    if metric == "chamfer_acc_visible":
        return "accuracy", "visible"
    if metric.startswith("chamfer_comp_") and metric[len("chamfer_comp_"):] in VISIBILITY_PARTS:
        return "completeness", metric[len("chamfer_comp_"):]
    m = _VISIBILITY_RECALL.match(metric)
    return (f"recall@{m.group(1)}", m.group(2)) if m else None


def visibility_label(metric: str) -> str:
    """A visibility column in words: ``chamfer_comp_self_hidden`` -> "completeness, self-hidden",
    ``chamfer_acc_visible`` -> "accuracy, visible", ``recall@0.05_visible`` -> "recall@0.05, visible"; another
    column as it is."""
    kind = visibility_part(metric)
    return f"{kind[0]}, {kind[1].replace('_', '-')}" if kind else metric


def _number(v: Any) -> float:
    return float(v) if _finite(v) else math.nan


def _n_used(r: Mapping[str, Any]) -> int:
    """The values a summary row's mean is over: ``n_used``, else n - n_failed - n_nan."""
    if r.get("n_used") is not None:
        return int(r["n_used"])
    return int(r.get("n") or 0) - int(r.get("n_failed") or 0) - int(r.get("n_nan") or 0)


def _level_key(stratum: str, level: str) -> tuple[int, int]:
    if stratum == "domain":
        return _STRATUM_ORDER["domain"], _DOMAIN_ORDER.get(level, 3)
    return _STRATUM_ORDER.get(stratum, 3), 1 if level == "(none)" else 0


def visibility_strata(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A run's visibility split by stratum, from its summary records (`evaluate.summary.summarize` rows, as
    summary.json and `run_summary` hold them): one row for "all", one per domain (synthetic, then real) and one
    per occlusion bin (`evaluate.summary.occlusion_bin`'s labels, in bin order).

    Args:
        summary: the run's summary records (stratum, level, metric, n_used, mean, low, high).

    Returns:
        Rows ``{"stratum", "level", "n", c, c_low, c_high, c_n for each visibility column c}``: the mean of c
        over the samples scored ok with a value (NaN where none has one), its bootstrap interval (whole twin
        pairs on a paired benchmark), c_n the samples with a value, n the largest c_n of the row. [] when the
        summary has no visibility column.
    """
    cols = visibility_columns(r["metric"] for r in summary)
    if not cols:
        return []
    cells: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in summary:
        if r["metric"] in cols and r["stratum"] in _STRATUM_ORDER:
            cells.setdefault((r["stratum"], str(r["level"])), {})[r["metric"]] = r
    rows = []
    for stratum, level in sorted(cells, key=lambda k: _level_key(*k)):  # stable: bins keep the summary's order
        by = cells[(stratum, level)]
        row: dict[str, Any] = {"stratum": stratum, "level": level}
        for c in cols:
            s = by.get(c) or {}
            row.update({c: _number(s.get("mean")), f"{c}_low": _number(s.get("low")),
                        f"{c}_high": _number(s.get("high")), f"{c}_n": _n_used(s) if s else 0})
        row["n"] = max(row[f"{c}_n"] for c in cols)
        rows.append(row)
    return rows


def visibility_change(comparison: Mapping[str, Any]) -> list[dict[str, Any]]:
    """How the visibility split moved from A to B, from a comparison payload
    (`evaluate.compare.Comparison.to_dict()`): its rows of the visibility columns in the "all" stratum and per
    domain, "all" first, then synthetic and real.

    Args:
        comparison: the payload; its ``table`` holds, per (stratum, level, metric), the mean paired difference
            ``delta`` = mean(B - A) over the samples both sides scored with a value, with the comparison's paired
            bootstrap interval (whole ``pair_id`` groups on a paired benchmark; two-level with several runs).

    Returns:
        Rows ``{"level", "stratum", "metric", "direction", "n", "n_units", "mean_a", "low_a", "high_a", "mean_b",
        "low_b", "high_b", "delta", "delta_low", "delta_high", "rel_delta", "pvalue", "p_holm", "significant",
        "better"}`` (the comparison's own figures); [] when the comparison holds no visibility column.
    """
    table = list(comparison.get("table") or [])
    cols = visibility_columns(r["metric"] for r in table)
    keep = ("stratum", "metric", "direction", "n", "n_units", "mean_a", "low_a", "high_a", "mean_b", "low_b", "high_b",
            "delta", "delta_low", "delta_high", "rel_delta", "pvalue", "p_holm", "significant", "better")
    rows = [{"level": str(r["level"]), **{k: r.get(k) for k in keep}} for r in table
            if r["metric"] in cols and r["stratum"] in ("all", "domain")]
    return sorted(rows, key=lambda r: (r["stratum"] != "all", _DOMAIN_ORDER.get(r["level"], 3), r["level"],
                                       cols.index(r["metric"])))
