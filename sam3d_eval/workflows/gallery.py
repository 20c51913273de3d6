"""The "worst samples" cards of a report: chosen samples rendered from each side beside their ground truth.

Only scored samples are shown (failed ones have their own table with the reason). Each card has a title (the
sample id), a caption (the figure that made it worst, and the sample's strata) and one image per source plus
the ground truth, all of one sample in one frame, rendered a chunk of samples at a time (`report.thumbnails`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

__all__ = ["gallery", "strata_caption"]


def strata_caption(row: Mapping[str, Any]) -> str:
    """``domain real, category chair, occlusion 0.45`` from a manifest row (the columns it has)."""
    return ", ".join(f"{k} {row[k]:.2f}" if k == "occlusion" else f"{k} {row[k]}"
                     for k in ("domain", "category", "occlusion") if k in row and row[k] == row[k])


def gallery(
    rows: Sequence[Mapping[str, Any]],
    sources: Sequence[tuple[str, Any, Any]],
    captions: Mapping[str, str],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Thumbnail cards for `rows` (manifest rows, in the order shown).

    Args:
        rows: the manifest rows of the samples to show.
        sources: ``(label, prediction source or None, protocol)`` per side; a side whose source cannot be
            rebuilt (None) shows "not available" instead of its render.
        captions: ``{sample_id: text}``, the figure that put the sample here.
        progress: called with (samples rendered, samples) as the rendering goes.

    Returns:
        Cards for `report.build.thumbs_block`: ``{"title", "caption", "images": [{"label", "uri", "missing"}]}``.
    """
    from ..evaluate.sides import sample_meshes
    from ..evaluate.sources import load_ground_truth
    from ..report.thumbnails import render_thumbnail_sets

    preds = [sample_meshes(src, rows, protocol) for _, src, protocol in sources]
    sets = []
    for r in rows:
        gt = load_ground_truth(r.get("gt_mesh"))
        sets.append((tuple(p[str(r["sample_id"])] for p in preds), None if isinstance(gt, BaseException) else gt))
    ims = render_thumbnail_sets(sets, progress=None if progress is None else (lambda done: progress(done, len(rows))))
    cards = []
    for r, im in zip(rows, ims):
        sid = str(r["sample_id"])
        images = []
        for j, ((label, src, _), pred) in enumerate(zip(sources, preds)):
            missing = None if pred[sid] is not None else (
                "the prediction cannot be read again" if src is not None else "the run's predictions are not available")
            images.append({"label": label, "uri": im["preds"][j], "missing": missing})
        images.append({"label": "ground truth", "uri": im["gt"]})
        strata = strata_caption(r)
        cards.append({"title": sid, "caption": captions.get(sid, "") + (f" ({strata})" if strata else ""),
                      "images": images})
    return cards
