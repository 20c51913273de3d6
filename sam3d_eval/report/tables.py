"""Number formatting and table cells for the report, and the metric definitions its methods section prints."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["METRIC_DEFINITIONS", "cell", "definition", "fmt", "fmt_ci", "fmt_fixed", "fmt_p", "fmt_rate", "gap_counts"]

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
}


def definition(metric: str) -> str:
    """The definition of a metric column: its own entry, else the longest key it starts with, else ''."""
    if metric in METRIC_DEFINITIONS:
        return METRIC_DEFINITIONS[metric]
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


def cell(text: str, cls: str = "", title: str = "") -> dict[str, str]:
    """A table cell with a CSS class (``num``, ``worse``, ``better``, ``muted``) and a hover title."""
    return {"text": text, "cls": cls, "title": title}
