"""Report documents (`report.html` renders them) from analysis records: a comparison, or one or more runs.

Inputs are JSON-ready records, never live objects of the evaluation layer (this layer sits beside it, not
above it): a comparison payload (`evaluate.compare.Comparison.to_dict()`), per-run summaries (the
``summary``, ``occlusion_accuracy`` and ``domain_gap`` records ``sam3d-eval evaluate`` writes to
summary.json), phase-boundary gap rows (the training loop's gap.csv) and rendered thumbnails.

Sections, in order: verdict first, opening with the decision in one sentence (`decision_sentence`: B
against A; for runs, against the first run when a comparison is given, else the last run); the metric table
with intervals; strata (domain, occlusion bin); the synthetic-vs-real gap, led by what it is made of in words
(`gap_decomposition_sentence`: the occlusion-and-category mix, appearance at matched covariates, GT wear),
with its plot across curriculum phases or data-engine rounds when given; the gap by shift
(`attribution_section`, when the results record ``shift_*`` intensities); for runs, the visible and hidden
surfaces (`visibility_section`, when the protocol scored the visibility split: each run by domain and occlusion
bin, and the change from the first run to the last, led by `visibility_change_sentences`); the
occlusion-stratified accuracy plot; the per-category breakdown; preference; samples that failed; the worst scored samples as thumbnails; the methods (protocol and
fingerprint, metric definitions, versions, seeds, substitutes). Each section has its own builder
(``_metrics_section``, ``_gap_section``, ... for a comparison; ``_runs_metrics_section``, ``_runs_gap_section``,
... for runs); `comparison_document` and `runs_document` only assemble them.

Human judgements (`judgement_sections`, alone in `preference_document` or appended to `runs_document`) come
as the ``preference`` and ``rubric`` records of `stats.preference.preference_summary(...).to_dict()` and
`stats.rubric.rubric_summary(...).to_dict()` (the JSON `sam3d-eval preference --out` writes).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from typing import Any, Mapping, Sequence

from ..io.results import GAP_METRICS, direction
from .figures import interval_figure, occlusion_figure, phase_gap_figure, stacked_bar_figure
from .html import ReportDocument
from .tables import (GAP_PART_DEFINITIONS, cell, definition, fmt, fmt_ci, fmt_p, fmt_rate, gap_counts, gap_share,
                     has_decomposition, mix_words, no_gap, visibility_change, visibility_columns, visibility_label,
                     visibility_part, visibility_strata)

__all__ = ["attribution_section", "comparison_document", "decision_sentence", "gap_decomposition_sentence",
           "judgement_sections", "methods_section", "preference_document", "runs_document", "thumbs_block",
           "visibility_change_sentences", "visibility_section"]

PROTOCOL_FIELDS = ("name", "version", "alignment", "normalization", "num_samples", "seed", "chamfer", "taus",
                   "metrics", "align_points", "icp_iterations", "overrides")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _fig_block(fig) -> dict[str, Any]:
    return {"type": "figure", "uri": fig.uri, "alt": fig.alt, "caption": fig.caption}


THUMBS_FRAME = ("Every geometry of a sample is in one frame: the ground truth's unit cube, widened to cover a "
                "prediction that reaches outside it; two views each, point clouds drawn as points.")


def _failure_reason(item: Mapping[str, Any]) -> str | None:
    """The failure reason of a gallery item: its ``error``, else a caption ``failed: REASON (strata)``."""
    if item.get("error"):
        return str(item["error"])
    cap = str(item.get("caption") or "")
    if not cap.startswith("failed: "):
        return None
    reason = cap[len("failed: "):]
    return reason.rsplit(" (", 1)[0] if reason.endswith(")") and " (" in reason else reason


def thumbs_block(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A thumbnails block: items with ``title``, ``caption`` and ``images`` ([{"label", "uri", "missing"}]).

    The "Worst samples" gallery is meant for the worst *scored* samples: failed samples have their own table,
    with the reason. An item of a failed sample (``error``: the reason, or a caption ``failed: REASON``) that
    a caller still passes shows ``failed: REASON`` in place of each missing render but the ground truth's,
    never a note that the prediction could not be read.
    """
    out = []
    for t in items:
        t = dict(t)
        reason = _failure_reason(t)
        if reason is not None:
            t["images"] = [dict(im, missing=f"failed: {reason}")
                           if not im.get("uri") and not str(im.get("label", "")).startswith("ground truth") else dict(im)
                           for im in t.get("images") or []]
        out.append(t)
    return {"type": "thumbs", "items": out}


def methods_section(*, protocol: Mapping[str, Any] | None, fingerprint: str | None, metrics: Sequence[str],
                    metadata: Mapping[str, Any] | None = None, seeds: Mapping[str, Any] | None = None,
                    substitutes: Mapping[str, Any] | None = None, extra: Sequence[Sequence[str]] = (),
                    statistics: Sequence[str] = ()) -> dict[str, Any]:
    """The methods section: protocol fields and fingerprint, metric definitions, statistics, versions, seeds
    and substitutes (each given as a mapping; missing ones are said to be unrecorded)."""
    blocks: list[dict[str, Any]] = []
    proto_items = []
    if protocol:
        label = f"{protocol.get('name')} v{protocol.get('version')}"
        proto_items.append(["protocol", label])
        proto_items.append(["fingerprint", fingerprint or "-"])
        for k in PROTOCOL_FIELDS[2:]:
            if k in protocol and protocol[k] not in (None, [], {}):
                v = protocol[k]
                proto_items.append([k, ", ".join(f"{a}={b}" for a, b in v.items()) if isinstance(v, dict)
                                    else ", ".join(map(str, v)) if isinstance(v, list) else str(v)])
        if protocol.get("source"):
            proto_items.append(["source", str(protocol["source"])])
    blocks.append({"type": "dl", "items": proto_items or [["protocol", "not recorded"]]})
    defs = [[m, definition(m)] for m in metrics if definition(m)]
    if defs:
        blocks.append({"type": "table", "caption": "Metric definitions (docs/definitions.md)", "header": ["metric", "definition"],
                       "rows": defs})
    if statistics:
        blocks.append({"type": "list", "items": list(statistics)})
    env = []
    meta = dict(metadata or {})
    for k in ("version", "git_commit", "git_dirty", "python", "torch", "platform", "time", "command"):
        if k in meta and meta[k] is not None:
            v = meta[k]
            env.append([f"sam3d-eval {k}" if k == "version" else k, " ".join(v) if isinstance(v, list) else str(v)])
    for k, v in (seeds or {}).items():
        env.append([f"seed: {k}", str(v)])
    if substitutes:
        for k, v in substitutes.items():
            env.append([f"substitute: {k}", v if isinstance(v, str) else json.dumps(v)])
    else:
        env.append(["substitutes", "none recorded"])
    env += [list(e) for e in extra]
    blocks.append({"type": "dl", "items": env})
    return {"id": "methods", "title": "Methods", "blocks": blocks,
            "intro": ["Everything needed to reproduce these numbers: the protocol (its fingerprint is the digest "
                      "of every setting that changes a number), the metric definitions, the statistics, the "
                      "software versions and seeds, and any substitute used in place of the reference method."]}


# ----------------------------------------------------------------------------------------------------------
# comparison: one builder per section, `comparison_document` assembles them


def _better_cls(r: Mapping[str, Any]) -> str:
    if not r.get("significant"):
        return "num"
    return "num better" if r.get("better") == "B" else "num worse" if r.get("better") == "A" else "num"


def _pct(v: Any, lo: Any = None, hi: Any = None) -> str:
    if v is None or v != v:
        return "-"
    if lo is None or hi is None or lo != lo or hi != hi:
        return f"{100 * v:+.1f}%"
    return f"{100 * v:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _delta_header(a: str, b: str) -> list[str]:
    return ["metric", "better", "n (units)", f"{a} mean [95% CI]", f"{b} mean [95% CI]", f"delta {b} - {a} [95% CI]",
            "relative", "test p", "Holm p"]


def _delta_rows(rows, with_level: bool) -> list[list]:
    out = []
    for r in rows:
        cls = _better_cls(r)
        base = [r["level"]] if with_level else []
        out.append(base + [
            r["metric"], cell("lower" if r["direction"] == "lower" else "higher", "muted"),
            cell(f"{r['n']} ({r['n_units']})" if r.get("n_units") not in (None, r["n"]) else str(r["n"]), "num"),
            cell(fmt_ci(r["mean_a"], r["low_a"], r["high_a"]), "num"),
            cell(fmt_ci(r["mean_b"], r["low_b"], r["high_b"]), "num"),
            cell(fmt_ci(r["delta"], r["delta_low"], r["delta_high"]), cls),
            cell(_pct(r.get("rel_delta")), cls),
            cell(fmt_p(r["pvalue"]), "num"), cell(fmt_p(r["p_holm"]), cls),
        ])
    return out


def _robust_rows(rows, several: bool) -> list[list]:
    out = []
    for r in rows:
        row = [r["metric"], cell(r.get("figure") or "", "muted"),
               cell(fmt_ci(r.get("median_delta"), r.get("median_delta_low"), r.get("median_delta_high")), "num"),
               cell(_pct(r.get("geo_change"), r.get("geo_change_low"), r.get("geo_change_high")), "num"),
               cell(fmt_ci(r.get("prob_improvement"), r.get("prob_improvement_low"), r.get("prob_improvement_high"), 2),
                    "num")]
        if several:
            row += [cell(f"{fmt(r.get('run_min_a'))} - {fmt(r.get('run_max_a'))}", "num"),
                    cell(f"{fmt(r.get('run_min_b'))} - {fmt(r.get('run_max_b'))}", "num")]
        out.append(row)
    return out


def _failure_points(f: Mapping[str, Any], a: str, b: str) -> list[str]:
    """The verdict's lines about failed samples (`Comparison.failures`)."""
    if not f:
        return []
    unit = "pairs" if f.get("unit") == "cluster" else "samples"

    def rate(k: str) -> str:
        lo, hi = f.get(f"rate_{k}_low"), f.get(f"rate_{k}_high")
        ci = f" [{100 * lo:.1f}%, {100 * hi:.1f}%]" if lo is not None and hi is not None else ""
        return f"{100 * f[f'rate_{k}']:.1f}%{ci}"

    text = f"Failures ({unit} with a failed sample{' per run' if max(f['runs']) > 1 else ''}): {a} {rate('a')}, {b} {rate('b')} of {f['units']}"
    if f["test"] == "exact McNemar":
        text += (f"; exact McNemar test on the {unit} that failed on one side only ({f['only_a']} only in {a}, "
                 f"{f['only_b']} only in {b}): p {fmt_p(f['pvalue'])}, Holm {fmt_p(f.get('p_holm'))}")
    else:
        text += (f"; {f['test']} test of each unit's failure share over the runs: p {fmt_p(f['pvalue'])}, Holm "
                 f"{fmt_p(f.get('p_holm'))}")
    if f["only_a"] + f["only_b"] and f["min_attainable_p"] >= f["alpha"]:
        text += (f" (with {f['only_a'] + f['only_b']} discordant {unit} no outcome of the exact test reaches "
                 f"p < {f['alpha']:g})")
    if f.get("significant"):
        text += f". {b if f['worse'] == 'B' else a} fails significantly more."
    return [text + ("" if text.endswith(".") else ".")]


def _verdict_level(payload: Mapping[str, Any]) -> str:
    return "regression" if payload["regressed"] else (
        "improvement" if payload["verdict"].startswith("IMPROVEMENT") else "neutral")


def _runs_per_side(payload: Mapping[str, Any]) -> list[int]:
    return payload["settings"].get("runs") or [1, 1]


def _shown_metrics(payload: Mapping[str, Any]) -> list[str]:
    """The metrics of the strata tables: the regression list (else every compared metric)."""
    settings = payload["settings"]
    return settings.get("regression_metrics") or settings["metrics"]


def _listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _rate(v: Any) -> str:
    return "-" if v is None or v != v else f"{100 * v:.1f}%"


def _failure_clause(payload: Mapping[str, Any]) -> str:
    """How B's failure rate compares with A's, in words ('' when the payload has no failure comparison)."""
    a, b = payload["labels"]
    f = payload.get("failures") or {}
    if not f:
        return ""
    ra, rb = f.get("rate_a"), f.get("rate_b")
    if f.get("significant") and f.get("worse") == "B":
        regressed = any(r["metric"] == "failure rate" for r in payload.get("regressions") or [])
        return f"{b} fails more often ({_rate(rb)} against {_rate(ra)}{', a regression' if regressed else ''})"
    if f.get("significant") and f.get("worse") == "A":
        return f"{b} fails less often ({_rate(rb)} against {_rate(ra)})"
    if ra == rb:
        return f"failures are the same ({_rate(ra)} of the {'pairs' if f.get('unit') == 'cluster' else 'samples'})"
    if f.get("pvalue") is None:
        return f"failures were not tested ({a} {_rate(ra)}, {b} {_rate(rb)})"
    return f"failures do not differ significantly ({a} {_rate(ra)}, {b} {_rate(rb)})"


def decision_sentence(payload: Mapping[str, Any]) -> str:
    """The decision of a comparison (`Comparison.to_dict()`) in one sentence of words: where B is
    significantly better or worse than A on the "all" stratum (Holm-adjusted), which of the worse metrics
    count as regressions, and how the failure rates compare. For example:

        stage 2 is better than stage 1 on normal_consistency and no worse elsewhere; failures are the same
        (0.0% of the samples).
    """
    a, b = payload["labels"]
    overall = [r for r in payload["table"] if r["stratum"] == "all"]
    regressed = [r["metric"] for r in payload.get("regressions") or [] if r["metric"] != "failure rate"]
    better = [r["metric"] for r in overall if r.get("significant") and r.get("better") == "B"]
    worse = [r["metric"] for r in overall if r.get("significant") and r.get("better") == "A"]
    untested = [r["metric"] for r in overall if r.get("p_holm") is None or r["p_holm"] != r["p_holm"]]
    rest = len(overall) - len(better) - len(worse) - len(untested)
    if worse:
        regs = [m for m in worse if m in regressed]
        worse_on = _listing(worse) + (" (a regression)" if regs == worse else f" (a regression on {_listing(regs)})"
                                      if regs else " (not counted as a regression)")
    if better and worse:
        text = f"{b} is better than {a} on {_listing(better)} but worse on {worse_on}"
    elif better:
        text = f"{b} is better than {a} on {_listing(better)}" + (" and no worse elsewhere" if rest else "")
    elif worse:
        text = f"{b} is worse than {a} on {worse_on}" + (" and no better elsewhere" if rest else "")
    elif rest:
        text = f"{b} and {a} do not differ significantly on any metric"
    else:
        text = f"no metric could be tested between {b} and {a}"
    if untested and (better or worse or rest):
        text += f"; not testable: {_listing(untested)}"
    fail = _failure_clause(payload)
    return text + (f"; {fail}" if fail else "") + "."


def _change_line(r: Mapping[str, Any], what: str) -> str:
    return (f"{what} on {r['metric']}: {fmt(r['mean_a'])} -> {fmt(r['mean_b'])} (delta "
            f"{fmt_ci(r['delta'], r['delta_low'], r['delta_high'])}, {100 * (r['rel_delta'] or 0):+.1f}%; verdict on the "
            f"{r.get('figure')} figure, Holm p {fmt_p(r['p_holm'])}).")


def _change_points(payload: Mapping[str, Any]) -> list[str]:
    """One line per metric that regressed, then one per metric significantly better for B (the failure rate
    has its own line, `_failure_points`)."""
    out = [_change_line(r, "Regression") for r in payload["regressions"] if r["metric"] != "failure rate"]
    return out + [_change_line(r, "Improvement") for r in payload["table"]
                  if r["stratum"] == "all" and r.get("significant") and r.get("better") == "B"]


def _verdict_section(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The verdict box of a comparison: the decision in one sentence (`decision_sentence`), then the
    verdict as the comparison states it, what it rests on, what changed and what was left out."""
    a, b = payload["labels"]
    settings, samples = payload["settings"], payload["samples"]
    pref = payload.get("preference") or {}
    runs = _runs_per_side(payload)
    several = max(runs) > 1
    points = [f"{samples['both_ok']} samples scored by both sides under protocol "
              f"{payload['protocol'].get('name')} v{payload['protocol'].get('version')} (fingerprint {payload['fingerprint']})"
              + (f"; {runs[0]} runs of {a} and {runs[1]} of {b} (training seeds), intervals over runs and samples."
                 if several else ".")]
    points += _failure_points(payload.get("failures") or {}, a, b)
    points += _change_points(payload)
    if pref.get("samples"):
        points.append(f"Per-sample preference on {pref['metric']}: {b} better on {pref['wins']}, {a} on {pref['losses']}, "
                      f"ties {pref['ties']}; win rate of {b} {fmt_rate(pref['rate'], pref['low'], pref['high'])}.")
    gaps = {k: {r["metric"]: r for r in ((payload.get("gap") or {}).get(k) or [])} for k in ("A", "B")}
    gm = pref.get("metric")
    if gm in gaps["A"] and gm in gaps["B"]:
        ga, gb = gaps["A"][gm], gaps["B"][gm]
        points.append(f"Synthetic-vs-real gap of {gm} ({ga['figure']}): {a} {fmt_ci(ga['estimate'], ga['low'], ga['high'], 3)}, "
                      f"{b} {fmt_ci(gb['estimate'], gb['low'], gb['high'], 3)}.")
    failed = len(samples["failed_only_A"]) + len(samples["failed_only_B"]) + len(samples["failed_both"])
    if failed or samples["only_in_A"] or samples["only_in_B"]:
        excluded = settings.get("failed_as", "exclude") == "exclude"
        points.append(f"{'Not in the metric tables' if excluded else 'Scored at their side worst value'}: "
                      f"{len(samples['failed_only_A'])} failed only in {a}, "
                      f"{len(samples['failed_only_B'])} only in {b}, {len(samples['failed_both'])} in both; "
                      f"{len(samples['only_in_A'])} scored only by {a}, {len(samples['only_in_B'])} only by {b}.")
    outliers = payload.get("outliers") or []
    if outliers:
        points.append(f"{len(outliers)} value(s) above {settings.get('outlier_factor', 10):g}x their side's median "
                      f"(kept in every figure; listed under Samples).")
    return {"level": _verdict_level(payload), "headline": decision_sentence(payload), "points": [payload["verdict"]] + points}


def _overall_table(payload: Mapping[str, Any], caption: str = "All samples both sides scored",
                   robust_next: bool = True) -> dict[str, Any]:
    """The table of the "all" stratum: both sides' means, the paired delta and its tests. robust_next: the
    robust-figures table follows (it names each metric's verdict figure); otherwise the note names them."""
    a, b = payload["labels"]
    settings = payload["settings"]
    figures = "; ".join(f"{k} for {', '.join(v)}" for k, v in (settings.get("verdict_figures") or {}).items())
    where = "(next table)" if robust_next or not figures else f"({figures})"
    several = max(_runs_per_side(payload)) > 1
    unit_note = (f"twin pairs ({settings.get('cluster')}) are resampled as one unit" if settings.get("cluster")
                 else "samples are the resampled units")
    return {
        "type": "table", "caption": caption, "header": _delta_header(a, b),
        "rows": _delta_rows([r for r in payload["table"] if r["stratum"] == "all"], False),
        "note": ((f"Two-level bootstrap intervals ({settings['n_resamples']} resamples, seed {settings['seed']}): runs "
                  "resampled within each side, units shared by both sides; " if several else
                  f"Bootstrap intervals ({settings['n_resamples']} resamples, seed {settings['seed']}); the delta's "
                  "interval resamples both sides together (studentized below 50 units); ")
                 + f"{unit_note}. test p: the test of the figure the verdict rests on {where}; Holm-adjusted within "
                 "one family: the regression metrics with the failure test, or the other (descriptive) metrics of this "
                 f"table. Red: significantly worse for {b}; green: significantly better (alpha {settings['alpha']:g})."),
    }


def _relative_change_figure(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The forest plot of B's relative change per metric (positive = worse), or None without means."""
    a, b = payload["labels"]
    rel = []
    for r in (r for r in payload["table"] if r["stratum"] == "all"):
        ma = r.get("mean_a")
        if r.get("rel_delta") is None or not ma:
            continue
        worse_sign = 1.0 if r["direction"] == "lower" else -1.0
        lo, hi = (r["delta_low"], r["delta_high"]) if r.get("delta_low") is not None else (None, None)
        to_rel = (lambda v: None if v is None else 100 * worse_sign * v / abs(ma))
        ends = sorted(x for x in (to_rel(lo), to_rel(hi)) if x is not None)
        rel.append({"metric": r["metric"], "value": 100 * worse_sign * r["rel_delta"],
                    "low": ends[0] if len(ends) == 2 else None, "high": ends[1] if len(ends) == 2 else None,
                    "better": r["better"]})
    if not rel:
        return None
    return _fig_block(interval_figure(
        rel, value="value", low="low", high="high", label="metric", colour_by="better",
        title=f"Change of {b} relative to {a} (positive = worse)", xlabel="% of A's mean (sign: worse is positive)"))


def _metrics_section(payload: Mapping[str, Any]) -> dict[str, Any]:
    a, b = payload["labels"]
    several = max(_runs_per_side(payload)) > 1
    overall = [r for r in payload["table"] if r["stratum"] == "all"]
    blocks: list[dict[str, Any]] = [_overall_table(payload), {
        "type": "table", "caption": "Robust figures: what the verdict rests on, medians, geometric means, probability of improvement",
        "header": ["metric", "verdict on", f"median {b} - {a} [95% CI]", f"geo-mean ratio {b}/{a} [95% CI]",
                   f"P({b} better) [95% CI]"] + ([f"{a} runs min - max", f"{b} runs min - max"] if several else []),
        "rows": _robust_rows(overall, several),
        "note": ("wilcoxon: paired signed-rank test (on per-unit mean differences); mean / median / geomean: the two-level "
                 "bootstrap of that figure, p from its percentile interval. The geometric-mean ratio is exp(mean of log B - "
                 "log A) - 1 (distances only); P(B better) is the share of run pairs in which B is better, per sample, "
                 "averaged over samples (ties half)."),
    }]
    fig = _relative_change_figure(payload)
    if fig:
        blocks.append(fig)
    return {"id": "metrics", "title": "Metrics", "blocks": blocks,
            "intro": [f"Paired comparison of {b} against {a} on the same samples."]}


def _strata_sections(payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """"By domain" and "By occlusion bin", each when the comparison has that stratification."""
    a, b = payload["labels"]
    shown = _shown_metrics(payload)
    sections = []
    for strat, heading in (("domain", "By domain"), ("occlusion_bin", "By occlusion bin")):
        rows = [r for r in payload["table"] if r["stratum"] == strat and r["metric"] in shown]
        if rows:
            sections.append({"id": strat.replace("_", "-"), "title": heading, "blocks": [{
                "type": "table", "header": [strat.replace("_", " ")] + _delta_header(a, b), "rows": _delta_rows(rows, True),
                "note": "Holm-adjusted across every level x metric of this stratification, the regression metrics and "
                        "the other (descriptive) compared metrics each a family of their own."}]})
    return sections


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))


def _share_words(row: Mapping[str, Any], part: str) -> str:
    """`` (N% of the excess over 1)`` of a part of a gap (`gap_share`), '' without a share."""
    share = gap_share(row, part)
    return "" if share is None else f" ({100 * share:.0f}% of the excess over {no_gap(row['figure']):g})"


def gap_decomposition_sentence(row: Mapping[str, Any], who: str = "") -> str | None:
    """What one gap figure is made of, in words: how much is the covariate (occlusion and category) mix, what
    is left at matched covariates (appearance, and whatever else the cells do not hold fixed), and how much
    is GT wear. For example:

        chamfer_l2 gap_ratio 1.110 [0.991, 1.240]: 0.225 [0.083, 0.351] of it is the occlusion-and-category
        mix; at matched occlusion-and-category the figure is 0.885 [0.806, 1.001] (appearance and whatever
        else the cells do not hold fixed; the cells cover 44% of the real samples); GT wear was not measured.

    Args:
        row: a `domain_gap` record with the decomposition columns (matched, covariate, wear_free, wear, ...).
        who: a label to open the sentence with (a run or a side), or ''.

    Returns:
        The sentence, or None when the row has neither a matched nor a wear-free figure.
    """
    if not has_decomposition(row):
        return None
    est = fmt_ci(row.get("estimate"), row.get("low"), row.get("high"), 3)
    text = f"{who + ': ' if who else ''}{row['metric']} {row['figure']} {est}"
    parts = []
    if _finite(row.get("matched")):
        mix = mix_words(row.get("matching"))
        cover = row.get("matched_coverage")
        parts.append(f"{fmt_ci(row['covariate'], row.get('covariate_low'), row.get('covariate_high'), 3)} of it"
                     f"{_share_words(row, 'covariate')} is the {mix} mix")
        parts.append(f"at matched {mix} the figure is "
                     f"{fmt_ci(row['matched'], row.get('matched_low'), row.get('matched_high'), 3)} (appearance and "
                     "whatever else the cells do not hold fixed"
                     + (f"; the cells cover {100 * cover:.0f}% of the real samples" if _finite(cover) else "") + ")")
    else:
        parts.append("the covariate mix was not measured"
                     + (f" ({row['decomposition_note'].split('; ')[0]})" if row.get("decomposition_note") else ""))
    if _finite(row.get("wear")):
        parts.append(f"GT wear accounts for {fmt_ci(row['wear'], row.get('wear_low'), row.get('wear_high'), 3)}"
                     f"{_share_words(row, 'wear')}: against the unworn GT the figure is "
                     f"{fmt_ci(row['wear_free'], row.get('wear_free_low'), row.get('wear_free_high'), 3)}")
    else:
        parts.append("GT wear was not measured (no real results scored against the unworn GT)")
    return f"{text}: " + "; ".join(parts) + "."


def _decomposition_table(rows: Sequence[Mapping[str, Any]], caption: str) -> dict[str, Any] | None:
    """The decomposition of each gap row (raw, covariate part, matched, coverage, wear, wear-free), or None when
    no row has one."""
    shown = [r for r in rows if has_decomposition(r)]
    if not shown:
        return None
    mix = mix_words(next((r.get("matching") for r in shown if r.get("matching")), None))

    def part(r, k):
        return cell(fmt_ci(r.get(k), r.get(f"{k}_low"), r.get(f"{k}_high"), 3), "num")

    def share(r, k):
        v = gap_share(r, k)
        return cell("-" if v is None else f"{100 * v:.0f}%", "num")

    out = []
    for r in shown:
        cover = r.get("matched_coverage")
        out.append([r["metric"], r["figure"], cell(fmt_ci(r.get("estimate"), r.get("low"), r.get("high"), 3), "num"),
                    part(r, "covariate"), share(r, "covariate"), part(r, "matched"),
                    cell(f"{100 * cover:.0f}% ({r.get('matched_cells')} cells)" if _finite(cover) else "-", "num"),
                    part(r, "wear"), share(r, "wear"), part(r, "wear_free"), r.get("decomposition_note") or ""])
    return {"type": "table", "caption": caption,
            "header": ["metric", "figure", "raw [95% CI]", f"{mix} mix [95% CI]", "share", "matched [95% CI]",
                       "coverage", "GT wear [95% CI]", "share", "wear-free [95% CI]", "note"],
            "rows": out,
            "note": (f"{mix} mix = raw - matched, where matched reweights the synthetic side to the real side's "
                     f"{mix} cells (real cells without a synthetic sample left out: coverage is the share of real "
                     "samples kept); GT wear = raw - wear-free, where wear-free scores the real samples against "
                     "their unworn GT. Share = part / (raw - no gap), '-' when the raw interval includes no gap. "
                     "Every interval comes from the raw figure's own bootstrap resamples (whole twin pairs on a "
                     "paired benchmark).")}


def _lead_sentences(rows: Sequence[Mapping[str, Any]], who: str = "") -> list[str]:
    """The decomposition sentences of the headline gap figures (`io.results.GAP_METRICS`, else the first row)."""
    rows = list(rows)
    lead = [r for r in rows if r["metric"] in GAP_METRICS] or rows[:1]
    return [t for t in (gap_decomposition_sentence(r, who) for r in lead) if t]


def _gap_section(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The synthetic-vs-real gap of both sides, led by what it is made of, or the comparison's note on why
    there is none."""
    a, b = payload["labels"]
    settings = payload["settings"]
    gap_a, gap_b = (payload.get("gap") or {}).get("A") or [], (payload.get("gap") or {}).get("B") or []
    if not (gap_a or gap_b):
        if settings.get("gap_note"):
            return {"id": "gap", "title": "Synthetic-vs-real gap", "blocks": [{"type": "text", "text": settings["gap_note"]}]}
        return None
    by_b = {r["metric"]: r for r in gap_b}
    rows = []
    for r in gap_a:
        rb = by_b.get(r["metric"], {})
        rows.append([r["metric"], r["figure"], cell(fmt_ci(r["estimate"], r["low"], r["high"]), "num"),
                     cell(fmt_ci(rb.get("estimate"), rb.get("low"), rb.get("high")), "num"),
                     cell(gap_counts(r), "num"), r.get("note") or ""])
    paired = any(r.get("design") == "paired" for r in gap_a + gap_b)
    blocks: list[dict[str, Any]] = []
    lead = _lead_sentences(gap_a, a) + _lead_sentences(gap_b, b)
    if lead:
        blocks.append({"type": "list", "items": lead})
    blocks.append({
        "type": "table", "header": ["metric", "figure", f"{a} [95% CI]", f"{b} [95% CI]", "n syn/real", "note"],
        "rows": rows, "note": "gap_ratio = m(real)/m(synthetic) (lower-is-better metrics); relative_drop = "
                              "1 - m(real)/m(synthetic); " + (
                                  "over the synthetic/real twin pairs, bootstrap intervals resampling whole pairs."
                                  if paired else "two-sample bootstrap intervals, each domain resampled on its own.")})
    for label, gap in ((a, gap_a), (b, gap_b)):
        table = _decomposition_table(gap, f"What the gap of {label} is made of")
        if table:
            blocks.append(table)
    out: dict[str, Any] = {"id": "gap", "title": "Synthetic-vs-real gap", "blocks": blocks}
    if lead:
        out["intro"] = ["What each side's gap is made of: the part the occlusion and category mix accounts for, "
                        "what is left at matched covariates (appearance), and the part that is GT wear."]
    return out


def attribution_section(attribution: Mapping[str, Mapping[str, Any] | None] | None) -> dict[str, Any] | None:
    """"Gap by shift": the per-shift attribution of each run's (or side's) gap, from the records of
    `evaluate.attribution.gap_attribution` keyed by label; None when no record is given (the results record
    no ``shift_*`` intensities).

    Args:
        attribution: ``{label: gap_attribution record or None}``.

    Returns:
        The section (one table per label and metric, or the fit's note), or None.
    """
    records = {k: v for k, v in (attribution or {}).items() if v}
    if not records:
        return None
    blocks: list[dict[str, Any]] = []
    conf = next(iter(records.values())).get("confidence", 0.95)
    for label, rec in records.items():
        for m in rec.get("metrics") or []:
            who = f"{label}: {m['metric']}" if len(records) > 1 else m["metric"]
            if not m.get("rows"):
                blocks.append({"type": "text", "text": f"{who}: no attribution ({m.get('note') or 'no fit'})."})
                continue
            log = bool(m.get("log"))
            rows = []
            for r in m["rows"]:
                if r["kind"] == "intercept":
                    continue
                term = r["term"][len("shift_"):] if str(r["term"]).startswith("shift_") else r["term"]
                contrib = r.get("contribution")
                factor = f"x{math.exp(contrib):.3f}" if log and _finite(contrib) else "-"
                rows.append([term, cell(r["kind"], "muted"),
                             cell(fmt_ci(r.get("coef"), r.get("low"), r.get("high"), 3), "num"),
                             cell(fmt_p(r.get("pvalue")), "num"), cell(fmt(r.get("mean_target"), 3), "num"),
                             cell(fmt_ci(contrib, r.get("contribution_low"), r.get("contribution_high"), 3), "num")]
                            + ([cell(factor, "num")] if log else [])
                            + [cell("-" if not _finite(r.get("share")) else f"{100 * r['share']:.0f}%", "num")])
            scale = f"log {m['metric']}" if log else m["metric"]
            paired = m.get("design") == "paired"
            n = (f"{m.get('n_pairs')} pairs" if paired else f"{m.get('n_target')} real, {m.get('n_reference')} synthetic samples")
            blocks.append({
                "type": "table", "caption": f"{who}: the gap in mean {scale} by shift ({n}, R^2 {fmt(m.get('r_squared'), 2)})",
                "header": ["term", "kind", f"coefficient [{conf:.0%} CI]", "p", "mean intensity (real)",
                           f"contribution [{conf:.0%} CI]"] + (["as a ratio"] if log else []) + ["share of total"],
                "rows": rows,
                "note": ((f"Per pair: the difference of {scale} between the real twin and its synthetic twin, regressed "
                          "on the real twin's shift intensities; contribution = coefficient x mean intensity; the "
                          "residual is the gap left at no shift." if paired else
                          f"{scale} of the real samples regressed on their shift intensities"
                          + (f" and {', '.join(m.get('categorical') or [])}" if m.get("categorical") else "")
                          + "; contribution = coefficient x (mean real - mean synthetic) of the term (synthetic "
                          "intensities are 0, so a shift's effect is extrapolated from its variation among the real "
                          "samples); the residual is the gap no recorded term explains.")
                         + " The contributions add up to the total" + (" (exp(total) = the geometric-mean gap ratio)"
                                                                        if log else "")
                         + "; HC3 sandwich intervals, normal quantile."
                         + (f" Left out (constant among the real samples): {', '.join(m['constant_shifts'])}."
                            if m.get("constant_shifts") else ""))})
    return {"id": "gap-attribution", "title": "Gap by shift", "blocks": blocks, "intro": [
        "Which recorded real-side shift the gap comes from: an OLS fit of the metric on each real sample's shift "
        "intensities splits the gap into one contribution per shift and a residual."]}


VISIBILITY_TITLE = "Visible and hidden surfaces"
VISIBILITY_NO_CAMERA = "visibility split unavailable: the manifest has no camera"


def _part_words(metric: str) -> str:
    """The part of a visibility column in words: ``chamfer_comp_occluder_hidden`` -> "occluder-hidden"."""
    return visibility_part(metric)[1].replace("_", "-")


def _interval_words(settings: Mapping[str, Any]) -> str:
    """How a comparison's delta intervals were drawn, in words (from its settings)."""
    conf = settings.get("confidence", 0.95)
    several = max(settings.get("runs") or [1, 1]) > 1
    how = ("two-level bootstrap interval (runs and units resampled)" if several else
           "paired bootstrap interval (studentized below 50 units)")
    return f"{conf:.0%} {how}" + (f", resampling whole {settings['cluster']} groups" if settings.get("cluster") else "")


def visibility_change_sentences(comparison: Mapping[str, Any]) -> list[str]:
    """Which part of the visibility split moved most from A to B, in words, from a comparison payload
    (`evaluate.compare.Comparison.to_dict()`, "all" stratum): one sentence on completeness, its parts ranked by
    their change relative to A's mean (the squared distances of the hidden parts are larger to begin with),
    and one on recall at the largest tau, ranked by the change of the share itself; each names the figure it
    rests on. For example:

        From stage 1 to stage 2 (final), completeness on the occluder-hidden part changed by -0.0120 [-0.0200,
        -0.0050] (-35% of stage 1's mean), on the self-hidden part by ... and on the visible part by ...: the
        occluder-hidden part moved most relative to stage 1's mean (figure: the mean paired difference stage 2
        (final) - stage 1 of chamfer_comp_<part>, a squared distance, over the samples both scored with a value
        in the part (occluder-hidden 6, ...); 95% paired bootstrap interval, resampling whole pair_id groups).

    Returns:
        The sentences; [] when the comparison holds no visibility column or no part has a value.
    """
    a, b = comparison["labels"]
    rows = [r for r in visibility_change(comparison) if r["stratum"] == "all" and _finite(r.get("delta"))]
    interval = _interval_words(comparison.get("settings") or {})
    kinds = list(dict.fromkeys(visibility_part(r["metric"])[0] for r in rows))
    recall = [k for k in kinds if k.startswith("recall@")]
    out = []
    for kind in ["completeness"] + recall[-1:]:  # recall at the last (largest) tau the comparison holds
        parts = [r for r in rows if visibility_part(r["metric"])[0] == kind]
        if not parts:
            continue
        relative = kind == "completeness"

        def size(r: Mapping[str, Any]) -> float:
            v = r.get("rel_delta") if relative else r.get("delta")
            return abs(v) if _finite(v) else -1.0

        parts.sort(key=size, reverse=True)

        def change(r: Mapping[str, Any]) -> str:
            rel = r.get("rel_delta")
            extra = f" ({100 * rel:+.0f}% of {a}'s mean)" if relative and _finite(rel) else ""
            return fmt_ci(r["delta"], r.get("delta_low"), r.get("delta_high")) + extra

        clauses = [f"on the {_part_words(r['metric'])} part {'changed ' if i == 0 else ''}by {change(r)}"
                   for i, r in enumerate(parts)]
        text = f"From {a} to {b}, {kind} {_listing(clauses)}"
        text += ((f": the {_part_words(parts[0]['metric'])} part moved most" + (f" relative to {a}'s mean" if relative else ""))
                 if len(parts) > 1 else " (the only part with values)")
        column = "chamfer_comp_<part>" if relative else f"{kind}_<part>"
        unit = "a squared distance" if relative else "a share of the part's GT samples"
        n = ", ".join(f"{_part_words(r['metric'])} {r['n']}" for r in parts)
        out.append(f"{text} (figure: the mean paired difference {b} - {a} of {column}, {unit}, over the samples both "
                   f"scored with a value in the part ({n}); {interval}).")
    return out


def _visibility_strata_table(run: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], caption: str) -> dict[str, Any]:
    """One run's visibility split by stratum (`visibility_strata` rows) as a table block."""
    cols = visibility_columns(rows[0])
    out = []
    for r in rows:
        level = f"occlusion {r['level']}" if r["stratum"] == "occlusion_bin" else r["level"]
        out.append([level, cell(str(r["n"]), "num")]
                   + [cell(fmt_ci(r[c], r[f"{c}_low"], r[f"{c}_high"])
                           + ("" if r[f"{c}_n"] == r["n"] else f" (n={r[f'{c}_n']})"), "num") for c in cols])
    norm = (run.get("protocol") or {}).get("normalization")
    return {"type": "table", "caption": caption, "header": ["stratum", "n"] + [visibility_label(c) for c in cols],
            "rows": out,
            "note": ("Mean [95% bootstrap interval] over the samples scored ok with a value in that column (whole twin "
                     "pairs resampled on a paired benchmark); n: the samples with a value in any column, (n=k) where a "
                     "column has fewer (a part without GT samples, e.g. no occluder-hidden part in an unoccluded view, "
                     "is NaN). Accuracy and completeness are squared distances, as chamfer_l2 (units: the protocol's "
                     "normalised length" + (f", {norm}" if norm else "") + ", squared); recall is the share of the "
                     "part's GT samples closer than tau to the prediction. Occlusion: the hidden share of the object "
                     "(the manifest's occlusion column).")}


def visibility_section(runs: Sequence[Mapping[str, Any]],
                       comparison: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """"Visible and hidden surfaces": each run's visibility split (accuracy on the visible part, completeness and
    recall on each part) by domain and occlusion bin, from its summary records (`visibility_strata`); with a
    comparison of the last run against the first that holds the split, the change per domain and overall
    (`visibility_change`, the comparison's paired intervals) led by `visibility_change_sentences`.

    Args:
        runs: the run records of `runs_document` (their ``summary``).
        comparison: `evaluate.compare.Comparison.to_dict()` of the last run against the first, or None.

    Returns:
        The section, or None when no run has a visibility column. A run whose visibility columns are all NaN
        (no manifest row had a camera) gets a line saying the split is unavailable instead of a table.
    """
    split = [(r, visibility_strata(r.get("summary") or [])) for r in runs]
    # a run whose visibility columns hold no value has them in metrics_without_values (`run_summary`)
    split = [(r, rows) for r, rows in split if rows or visibility_columns(r.get("metrics_without_values") or [])]
    if not split:
        return None
    several = len(runs) > 1
    blocks: list[dict[str, Any]] = []
    change = visibility_change(comparison) if comparison else []
    lead = visibility_change_sentences(comparison) if change else []
    if lead:
        blocks.append({"type": "list", "items": lead})
    for run, rows in split:
        label = run["label"]
        overall = next((r for r in rows if r["stratum"] == "all"), None) if rows else None
        if overall is None or overall["n"] == 0:
            counts = run.get("counts") or {}
            who = f"{label}: " if several else ""
            if counts and (counts.get("samples") or 0) - (counts.get("failed") or 0) <= 0:
                text = f"{who}visibility split unavailable: no sample was scored ok."
            else:
                text = (f"{who}{VISIBILITY_NO_CAMERA} (no scored sample has a value in any visibility column; each "
                        "results row's notes give the reason, e.g. \"visibility unavailable: the manifest row has no "
                        "camera\", or no mask).")
            blocks.append({"type": "text", "text": text})
            continue
        blocks.append(_visibility_strata_table(run, rows, f"{label}: by domain and occlusion bin"))
    if change:
        a, b = comparison["labels"]
        settings = comparison.get("settings") or {}
        gated = [m for m in dict.fromkeys(r["metric"] for r in change) if m in (settings.get("regression_metrics") or ())]
        blocks.append({"type": "table", "caption": f"Change from {a} to {b} (same samples)",
                       "header": ["level", "part"] + _delta_header(a, b), "rows": [
                           [r["level"], visibility_label(r["metric"])] + row[1:]
                           for r, row in zip(change, _delta_rows(change, True))],
                       "note": (f"delta = mean of {b} - {a} over the samples both scored ok with a value in that column "
                                f"(paired); {_interval_words(settings)}. Relative: delta / {a}'s mean. test p and Holm p "
                                "as in the comparison's tables: "
                                + ("the visibility columns are a descriptive Holm family of their own (with the other "
                                   "compared metrics outside the regression gate)" if not gated else
                                   f"{_listing(gated)} in the regression gate's family, the other columns a descriptive one")
                                + f"; green / red: significantly better / worse for {b}.")})
    elif sum(1 for _, rows in split if rows and rows[0]["n"]) > 1:
        blocks.append({"type": "text", "text": (
            "No change table: the comparison of the last run against the first holds no visibility column."
            if comparison else "No change table: no paired comparison of the last run against the first was computed "
                               "(other protocols or no shared sample).")})
    return {"id": "visibility", "title": VISIBILITY_TITLE, "blocks": blocks, "intro": [
        "The geometry split by what the input camera saw (docs/definitions.md, \"Visible and hidden surfaces\"): "
        "accuracy on the visible part, and completeness and recall on the visible part, the self-hidden part "
        "(back-facing, behind the object itself or out of view) and the occluder-hidden part (facing the camera "
        "but covered by something else)."]}


def _occlusion_section(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    a, b = payload["labels"]
    acc = payload.get("occlusion_accuracy") or {}
    series = {lab: [r for r in (acc.get(k) or []) if r["domain"] == "all"] for k, lab in (("A", a), ("B", b))}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    threshold = payload["settings"].get("accuracy_threshold", 0.5)
    return {"id": "occlusion", "title": "Occlusion-stratified accuracy", "blocks": [
        _fig_block(occlusion_figure(series, title=f"Accuracy by occlusion bin (F-score@0.05 >= {threshold})"))]}


def _category_section(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    a, b = payload["labels"]
    shown = _shown_metrics(payload)
    cats = [r for r in payload["table"] if r["stratum"] == "category" and r["metric"] in shown]
    if not cats:
        return None
    return {"id": "category", "title": "Per-category breakdown", "blocks": [{
        "type": "table", "header": ["category"] + _delta_header(a, b), "rows": _delta_rows(cats, True)}]}


def _preference_section(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """The proxy preference on one metric and, when given, the human votes between A and B."""
    a, b = payload["labels"]
    pref = payload.get("preference") or {}
    pblocks: list[dict[str, Any]] = []
    if pref.get("samples"):
        pblocks.append({"type": "dl", "items": [
            ["metric", f"{pref['metric']} ({pref['direction']} is better)"],
            [f"{b} better", str(pref["wins"])], [f"{a} better", str(pref["losses"])], ["ties", str(pref["ties"])],
            [f"win rate of {b} (ties excluded)", f"{fmt_rate(pref['rate'], pref['low'], pref['high'])}, exact binomial p {fmt_p(pref['pvalue'])}"],
            ["ties as half", fmt_rate(pref['rate_ties_half'], pref['low_ties_half'], pref['high_ties_half'])],
        ]})
    votes = payload.get("votes")
    if votes:
        pblocks.append({"type": "dl", "items": [
            ["human votes", f"{votes['votes']} votes on {votes['items']} items" + (f" by {votes['raters']} raters" if votes.get("raters") else "")],
            [f"{b} preferred", str(votes["wins"])], [f"{a} preferred", str(votes["losses"])], ["ties", str(votes["ties"])],
            [f"win rate of {b}", f"{fmt_rate(votes['rate'], votes['low'], votes['high'])}, exact binomial p {fmt_p(votes['pvalue'])}"],
        ]})
    if not pblocks:
        return None
    return {"id": "preference", "title": "Preference", "blocks": pblocks, "intro": [
        "The proxy preference counts, per sample, which side is better on one metric (ties kept); Wilson interval. "
        "Human votes, when given, are counted the same way."]}


def _samples_section(payload: Mapping[str, Any]) -> dict[str, Any]:
    """"Samples left out": failed or one-sided samples with their errors, and the flagged outliers."""
    a, b = payload["labels"]
    settings, samples = payload["settings"], payload["samples"]
    outliers = payload.get("outliers") or []
    sblocks = []
    lists = [(f"failed only in {a}", samples["failed_only_A"]), (f"failed only in {b}", samples["failed_only_B"]),
             ("failed in both", samples["failed_both"]), (f"scored only by {a}", samples["only_in_A"]),
             (f"scored only by {b}", samples["only_in_B"])]
    errors = samples.get("errors") or {}
    rows = []
    for what, ids in lists:
        for sid in ids:
            err = (errors.get(a) or {}).get(sid) or (errors.get(b) or {}).get(sid) or ""
            rows.append([sid, what, err])
    if rows:
        sblocks.append({"type": "table", "header": ["sample", "what", "error"], "rows": rows})
    else:
        sblocks.append({"type": "text", "text": "Every sample was scored by both sides."})
    if outliers:
        sblocks.append({"type": "table", "caption": f"Outliers (above {settings.get('outlier_factor', 10):g}x their side's median)",
                        "header": ["sample", "metric", "side", "value", "side median", "ratio"],
                        "rows": [[o["sample_id"], o["metric"], o["label"], cell(fmt(o["value"]), "num"),
                                  cell(fmt(o["median"]), "num"), cell(f"{o['ratio']:.0f}x", "num")] for o in outliers[:50]],
                        "note": "Flagged, not dropped: every figure includes them."})
    return {"id": "samples", "title": "Samples left out", "blocks": sblocks}


def _gallery_section(thumbnails: Sequence[Mapping[str, Any]], intro: str) -> dict[str, Any] | None:
    """"Worst samples": the rendered thumbnails (`thumbs_block`) under one intro paragraph, None without any."""
    if not thumbnails:
        return None
    return {"id": "worst", "title": "Worst samples", "blocks": [thumbs_block(thumbnails)], "intro": [intro]}


def _methods_section(payload: Mapping[str, Any], sides: Sequence[Mapping[str, Any]],
                     metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """`methods_section` of a comparison: its protocol, the two sides, and the statistics of the verdict."""
    settings = payload["settings"]
    side_items = [[s["label"], f"{s['kind']} {s['path']} (identity {s.get('identity')}; {s.get('rows_reused', 0)} stored rows "
                   f"reused, {s.get('rows_scored', 0)} scored now)"] for s in sides]
    subs = {}
    for s in sides:
        for k, v in ((s.get("checkpoint") or {}).get("substitutes") or {}).items():
            subs[f"{s['label']}: {k}"] = v
    gaps = [r for k in ("A", "B") for r in ((payload.get("gap") or {}).get(k) or [])]
    parts = list(GAP_PART_DEFINITIONS) if any(has_decomposition(r) for r in gaps) else []
    return methods_section(protocol=payload["protocol"], fingerprint=payload["fingerprint"],
                           metrics=list(settings["metrics"]) + parts, metadata=metadata, seeds={"bootstrap": settings["seed"], "protocol": payload["protocol"].get("seed")},
                           substitutes=subs, extra=side_items, statistics=_comparison_statistics(payload))


def _comparison_statistics(payload: Mapping[str, Any]) -> list[str]:
    """The Methods lines on how a comparison was tested: delta and intervals, verdict figures, failures, regression."""
    a, b = payload["labels"]
    settings = payload["settings"]
    alpha = settings["alpha"]
    several = max(_runs_per_side(payload)) > 1
    return [
        f"Paired delta: mean of {b} - {a} over the samples both scored ok"
        + ("; two-level percentile bootstrap: each side's runs resampled with replacement, and the units resampled "
           "with replacement once for both sides" if several else
           "; paired bootstrap interval, studentized (bootstrap-t) below 50 units, else percentile")
        + f" ({settings['n_resamples']} resamples, seed {settings['seed']}, confidence {settings['confidence']}); units: "
        + (f"the groups of {settings.get('cluster')} (twins resampled together)" if settings.get("cluster") else "samples") + ".",
        "Verdict figure per metric: " + "; ".join(f"{k} for {', '.join(v)}" for k, v in (settings.get("verdict_figures") or {}).items())
        + ". Wilcoxon signed-rank test on per-unit differences (exact without ties, tie-corrected normal approximation with "
        "them); bootstrap figures tested by inverting their percentile interval. "
        f"Holm correction per stratification; alpha {alpha:g}.",
        f"Failures: failed samples are {'left out of the metric tables' if settings.get('failed_as', 'exclude') == 'exclude' else 'scored at their side worst value'}; "
        "their rates are compared by the exact McNemar test (one run per side; a pair fails when a twin fails) or the "
        "two-level bootstrap (several runs).",
        f"Regression: a metric in {', '.join(settings['regression_metrics'])} significantly worse for {b} "
        f"(Holm p < {alpha:g}) by more than {100 * settings.get('min_effect', 0):g}% (the verdict figure's relative "
        f"change), or a significant rise in failed samples (p < {alpha:g}).",
    ]


def _present(*sections: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The sections in order, each given as a section, a list of sections, or None (left out)."""
    out: list[dict[str, Any]] = []
    for s in sections:
        if isinstance(s, list):
            out += s
        elif s is not None:
            out.append(s)
    return out


def comparison_document(payload: Mapping[str, Any], *, thumbnails: Sequence[Mapping[str, Any]] = (),
                        sides: Sequence[Mapping[str, Any]] = (), metadata: Mapping[str, Any] | None = None,
                        title: str | None = None,
                        attribution: Mapping[str, Mapping[str, Any] | None] | None = None) -> ReportDocument:
    """The report of a paired comparison (`evaluate.compare.Comparison.to_dict()` as `payload`).

    attribution: ``{side label: evaluate.attribution.gap_attribution record or None}``; a "Gap by shift"
    section follows the gap when a record is given (the results record ``shift_*`` intensities).
    """
    a, b = payload["labels"]
    pref = payload.get("preference") or {}
    gallery = (f"The scored samples where {b} lost most against {a} on {pref.get('metric', 'the preference metric')} "
               f"(samples that failed are listed under Samples left out). {THUMBS_FRAME}")
    sections = _present(_metrics_section(payload), _strata_sections(payload), _gap_section(payload),
                        attribution_section(attribution), _occlusion_section(payload), _category_section(payload), _preference_section(payload),
                        _samples_section(payload), _gallery_section(thumbnails, gallery),
                        _methods_section(payload, sides, metadata))
    return {"title": title or f"sam3d-eval compare: {b} vs {a}", "subtitle": f"A = {a}, B = {b}",
            "generated": _now(), "verdict": _verdict_section(payload), "sections": sections}


# ----------------------------------------------------------------------------------------------------------
# runs: one builder per section, `runs_document` assembles them


def _scored_clause(run: Mapping[str, Any]) -> str:
    n, failed = run["counts"]["samples"], run["counts"]["failed"]
    return f"{n - failed} of {n} samples scored" + (f", {failed} failed" if failed else "")


def _runs_verdict(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str], phases: Sequence[Mapping[str, Any]],
                  phase_label: str, notes: Sequence[str], comparison: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The verdict box of a runs report. With `comparison` (the last run against the first) it opens with
    that decision (`decision_sentence`) and lists what regressed and improved; without, it says which run is
    last and that no comparison was computed. Then the last run, the one a reader cares about (the final
    checkpoint of a training run): samples, headline metrics, its gap, the gap across phases, notes."""
    last = runs[-1]
    overall = {s["metric"]: s for s in last["summary"] if s["stratum"] == "all"}
    who = f"{last['label']}: " if len(runs) > 1 else ""
    pts = [f"{who}{last['counts']['samples']} samples, {last['counts']['failed']} failed, under protocol "
           f"{last['protocol'].get('name')} v{last['protocol'].get('version')} (fingerprint {last['fingerprint']})."]
    for m in metrics[:3]:
        if m in overall:
            s = overall[m]
            pts.append(f"{m}: {fmt_ci(s['mean'], s['low'], s['high'])}")
    for g in last.get("domain_gap") or []:
        if g["metric"] in metrics[:2] or g["metric"] == "accuracy":
            pts.append(f"gap {g['metric']} ({g['figure']}): {fmt_ci(g['estimate'], g['low'], g['high'], 3)}")
    if phases:
        first_m = next((m for m in metrics if any(p["metric"] == m for p in phases)), None)
        if first_m:
            seq = [p for p in phases if p["metric"] == first_m]
            pts.append(f"{first_m} gap across {len(seq)} {phase_label}s: {fmt(seq[0]['estimate'], 3)} ({seq[0]['label']}) -> "
                       f"{fmt(seq[-1]['estimate'], 3)} ({seq[-1]['label']})")
    pts += list(notes)
    if comparison:
        a, b = comparison["labels"]
        head = [f"{b} against {a}: {comparison['verdict']}"] + _failure_points(comparison.get("failures") or {}, a, b)
        return {"level": _verdict_level(comparison), "headline": decision_sentence(comparison),
                "points": head + _change_points(comparison) + pts}
    if len(runs) == 1:
        first = next((m for m in metrics if m in overall), None)
        value = (f"; mean {first} {fmt_ci(overall[first]['mean'], overall[first]['low'], overall[first]['high'])}"
                 if first else "")
        return {"level": "info", "headline": f"{last['label']}: {_scored_clause(last)}{value}.", "points": pts}
    headline = (f"{len(runs)} runs; the last is {last['label']} ({_scored_clause(last)}); no comparison between the "
                "runs was computed.")
    pts.insert(0, "The runs are described one by one: without a paired comparison, whether their intervals overlap "
                  "is not a test of a difference.")
    return {"level": "info", "headline": headline, "points": pts}


def _runs_metrics_section(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str],
                          comparison: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Each run's mean [95% CI] of the headline metrics, side by side; with `comparison`, then the "all" rows
    of B against A (paired delta, tests)."""
    header = ["metric", "better"] + [f"{r['label']} mean [95% CI]" for r in runs]
    by_run = [{s["metric"]: s for s in r["summary"] if s["stratum"] == "all"} for r in runs]
    rows = []
    for m in metrics:
        if not any(m in b for b in by_run):
            continue
        rows.append([m, cell(direction(m), "muted")] + [cell(fmt_ci(b[m]["mean"], b[m]["low"], b[m]["high"]), "num") if m in b else "-"
                                                         for b in by_run])
    blocks: list[dict[str, Any]] = [{
        "type": "table", "header": header, "rows": rows,
        "note": "Means over the samples scored ok, percentile bootstrap 95% intervals; failed samples are counted, not averaged."}]
    if not comparison:
        return {"id": "metrics", "title": "Metrics", "blocks": blocks}
    a, b = comparison["labels"]
    blocks.append(_overall_table(comparison, caption=f"{b} against {a}", robust_next=False))
    return {"id": "metrics", "title": "Metrics", "blocks": blocks, "intro": [
        f"Each run on its own; then {b} against {a}, paired on the samples both scored (the verdict rests on it)."]}


def _pivot(runs: Sequence[Mapping[str, Any]], stratum: str, shown: Sequence[str]) -> list[list]:
    """One row per (run when several, level of `stratum`): n, failed and the `shown` metrics' means."""
    multi = len(runs) > 1
    out = []
    for r in runs:
        cells: dict[str, dict[str, Any]] = {}
        for s in r["summary"]:
            if s["stratum"] == stratum and s["metric"] in shown:
                cells.setdefault(s["level"], {})[s["metric"]] = s
        for level, by in cells.items():
            first = next(iter(by.values()))
            out.append(([r["label"]] if multi else []) + [level, cell(str(first["n"]), "num"), cell(str(first["n_failed"]), "num")]
                       + [cell(fmt_ci(by[m]["mean"], by[m]["low"], by[m]["high"]), "num") if m in by else "-" for m in shown])
    return out


def _runs_strata_section(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any] | None:
    shown = list(metrics[:4])
    strata_header = ["run"] if len(runs) > 1 else []
    sblocks = []
    for stratum, what in (("domain", "domain"), ("occlusion_bin", "occlusion bin")):
        rows = _pivot(runs, stratum, shown)
        if rows:
            sblocks.append({"type": "table", "caption": f"By {what}", "header": strata_header + [what, "n", "failed"] + shown,
                            "rows": rows})
    if not sblocks:
        return None
    sblocks[-1]["note"] = "Mean [95% bootstrap interval] over the samples scored ok in each stratum."
    return {"id": "strata", "title": "By domain and occlusion bin", "blocks": sblocks}


def _runs_gap_section(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str], phases: Sequence[Mapping[str, Any]],
                      phase_label: str, gap_change: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each run's synthetic-vs-real gap, led by what it is made of (`gap_decomposition_sentence`), the gap
    across phases or rounds, and how it moved between stages."""
    gblocks: list[dict[str, Any]] = []
    lead = [t for r in runs for t in _lead_sentences(r.get("domain_gap") or [], r["label"] if len(runs) > 1 else "")]
    if lead:
        gblocks.append({"type": "list", "items": lead})
    for r in runs:
        if r.get("domain_gap"):
            shown = [g for g in r["domain_gap"] if g["metric"] in metrics or g["metric"] == "accuracy"]
            gblocks.append({"type": "table", "caption": f"{r['label']}", "header": ["metric", "figure", "synthetic", "real",
                                                                                  "estimate [95% CI]", "n syn/real", "note"],
                            "rows": [[g["metric"], g["figure"], cell(fmt(g["mean_synthetic"]), "num"), cell(fmt(g["mean_real"]), "num"),
                                      cell(fmt_ci(g["estimate"], g["low"], g["high"], 3), "num"),
                                      cell(gap_counts(g), "num"), g.get("note") or ""]
                                     for g in shown]})
            table = _decomposition_table(shown, f"{r['label']}: what the gap is made of")
            if table:
                gblocks.append(table)
    if phases:
        gblocks.append(_fig_block(phase_gap_figure(phases, metrics=[m for m in metrics if m.startswith(GAP_METRICS)]
                                                   or list(metrics[:2]), title=f"Synthetic-vs-real gap across {phase_label}s")))
        parts = any(has_decomposition(p) for p in phases)  # gap.csv written since the decomposition existed
        gblocks.append({"type": "table", "caption": f"Gap per {phase_label}", "header": [phase_label, "metric", "figure", "synthetic",
                                                                                         "real", "estimate [95% CI]"]
                        + (["matched [95% CI]", "covariate mix [95% CI]", "GT wear [95% CI]"] if parts else []),
                        "rows": [[p["label"], p["metric"], p["figure"], cell(fmt(p.get("mean_synthetic")), "num"),
                                  cell(fmt(p.get("mean_real")), "num"), cell(fmt_ci(p["estimate"], p["low"], p["high"], 3), "num")]
                                 + ([cell(fmt_ci(p.get(k), p.get(f"{k}_low"), p.get(f"{k}_high"), 3), "num")
                                     for k in ("matched", "covariate", "wear")] if parts else [])
                                 for p in phases if p["metric"] in metrics]})
    if gap_change:
        gblocks.append({"type": "table", "caption": "How the gap moved from stage 1 to stage 2 (same test samples)",
                        "header": ["metric", "figure", "stage 1 [95% CI]", "stage 2", "change [95% CI]",
                                   "share of the gap closed [95% CI]", "by the real split alone [95% CI]", "note"],
                        "rows": [[c["metric"], c["figure"], cell(fmt_ci(c.get("estimate_a"), c.get("estimate_a_low"), c.get("estimate_a_high"), 3), "num"),
                                  cell(fmt(c.get("estimate_b")), "num"),
                                  cell(fmt_ci(c.get("change"), c.get("change_low"), c.get("change_high"), 3), "num"),
                                  cell(fmt_ci(c.get("closed"), c.get("closed_low"), c.get("closed_high"), 2), "num"),
                                  cell(fmt_ci(c.get("closed_by_real"), c.get("closed_by_real_low"), c.get("closed_by_real_high"), 2), "num"),
                                  c.get("note") or ""]
                                 for c in gap_change],
                        "note": "change = figure(stage 2) - figure(stage 1). Share closed = (|stage-1 figure - no gap| - |stage-2 "
                                "figure - no gap|) / |stage-1 figure - no gap|; by the real split alone: the same with the synthetic "
                                "mean held at stage 1's, so a worse synthetic split does not count as closing the gap. "
                                "Intervals from one set of bootstrap resamples."})
    if not gblocks:
        return {"id": "gap", "title": "Synthetic-vs-real gap", "blocks": [{"type": "text", "text":
                "Not available: the runs do not hold samples of both domains."}]}
    paired = _gap_is_paired(runs, phases)
    intro = []
    if lead:
        intro.append("What the gap is made of: the part the occlusion and category mix accounts for, what is left at "
                     "matched covariates (appearance), and the part that is GT wear (each with an interval from the "
                     "gap's own resamples).")
    missing = sorted({m for r in runs for m in (r.get("metrics_without_values") or [])})
    if missing:
        intro.append(f"Not computed for any sample, so not in these tables: {', '.join(missing)}"
                     + (" (LPIPS needs its pretrained backbone weights, which were absent when these runs were scored; "
                        "a random backbone is never reported as LPIPS)." if "lpips" in missing else "."))
    intro.append(
        "gap_ratio = m(real)/m(synthetic) for lower-is-better metrics (1 = no gap); relative_drop = 1 - m(real)/m(synthetic) "
        "for higher-is-better ones (0 = no gap); " + (
            "the benchmark pairs every real sample with a synthetic twin (same object and camera), so the figures are over "
            "the pairs and the bootstrap intervals resample whole pairs." if paired else "two-sample bootstrap intervals."))
    return {"id": "gap", "title": "Synthetic-vs-real gap", "blocks": gblocks, "intro": intro}


def _gap_is_paired(runs: Sequence[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]]) -> bool:
    return any(g.get("design") == "paired" for r in runs for g in (r.get("domain_gap") or [])) or any(
        p.get("design") == "paired" for p in phases)


def _engine_section(engine_rounds: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    if not engine_rounds:
        return None
    modes = [k for k in engine_rounds[0] if k.startswith("failure_")]
    erows = []
    for e in engine_rounds:
        erows.append([str(e.get("round")), cell(str(e.get("images", "-")), "num"), cell(str(e.get("accepted", "-")), "num"),
                      cell(fmt_rate(e.get("accept_rate"), e.get("accept_low"), e.get("accept_high")), "num"),
                      cell("-" if e.get("cost_per_accepted") is None else f"${e['cost_per_accepted']:.2f}", "num"),
                      cell(fmt(e.get("agreement_accept"), 3), "num")]
                     + [cell(fmt_rate(e.get(m)), "num") for m in modes])
    return {"id": "engine", "title": "Data-engine rounds", "blocks": [{
        "type": "table", "header": ["round", "images", "accepted", "accept rate [95% Wilson]", "cost / accepted",
                                    "accept agreement"] + [m[len("failure_"):] for m in modes], "rows": erows,
        "note": "Failure columns: share of each failure mode among the rejected candidates' ratings."}]}


def _runs_occlusion_section(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Accuracy per occlusion bin: per domain for one run, the "all" domain of each run for several."""
    series = {}
    for r in runs:
        acc = r.get("occlusion_accuracy") or []
        if len(runs) == 1:
            for dom in dict.fromkeys(a["domain"] for a in acc):
                series[dom] = [a for a in acc if a["domain"] == dom]
        else:
            series[r["label"]] = [a for a in acc if a["domain"] == "all"]
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    return {"id": "occlusion", "title": "Occlusion-stratified accuracy", "blocks": [
        _fig_block(occlusion_figure(series, title="Accuracy by occlusion bin (F-score@0.05 >= 0.5), Wilson 95% intervals"))]}


def _runs_category_section(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any] | None:
    shown = list(metrics[:4])
    crow = _pivot(runs, "category", shown)
    if not crow:
        return None
    return {"id": "category", "title": "Per-category breakdown", "blocks": [{
        "type": "table", "header": (["run"] if len(runs) > 1 else []) + ["category", "n", "failed"] + shown, "rows": crow}]}


def _failed_section(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    frows = [[r["label"], f["sample_id"], f.get("error") or ""] for r in runs for f in r.get("failed", [])]
    return {"id": "samples", "title": "Failed samples", "blocks": [
        {"type": "table", "header": ["run", "sample", "error"], "rows": frows} if frows else
        {"type": "text", "text": "No sample failed."}]}


def _runs_methods_section(runs: Sequence[Mapping[str, Any]], metrics: Sequence[str], phases: Sequence[Mapping[str, Any]],
                          substitutes: Mapping[str, Any] | None,
                          comparison: Mapping[str, Any] | None = None) -> dict[str, Any]:
    last = runs[-1]
    extra = [[r["label"], f"{r['run_dir']} (protocol fingerprint {r['fingerprint']})"] for r in runs]
    if any(has_decomposition(g) for r in runs for g in (r.get("domain_gap") or [])):
        metrics = list(metrics) + list(GAP_PART_DEFINITIONS)
    split = visibility_columns(s["metric"] for r in runs for s in r.get("summary") or [])
    metrics = list(metrics) + [m for m in split if m not in metrics]  # the "Visible and hidden surfaces" columns
    compared = []
    if comparison:
        a, b = comparison["labels"]
        compared = _comparison_statistics(comparison)
        compared[0] = f"{b} against {a}. " + compared[0]
    return methods_section(protocol=last["protocol"], fingerprint=last["fingerprint"], metrics=metrics,
                           metadata=last.get("metadata"), seeds={"protocol": last["protocol"].get("seed"), "bootstrap": 0},
                           substitutes=substitutes, extra=extra, statistics=[
                               "Means with percentile bootstrap intervals (2000 resamples, seed 0); gap ratios with "
                               + ("bootstrap intervals over synthetic/real twin pairs" if _gap_is_paired(runs, phases)
                                  else "two-sample bootstrap intervals")
                               + "; accuracy with Wilson intervals."] + compared)


def runs_document(runs: Sequence[Mapping[str, Any]], *, metrics: Sequence[str], phases: Sequence[Mapping[str, Any]] = (),
                  phase_label: str = "curriculum phase", thumbnails: Sequence[Mapping[str, Any]] = (),
                  substitutes: Mapping[str, Any] | None = None, title: str | None = None,
                  notes: Sequence[str] = (), engine_rounds: Sequence[Mapping[str, Any]] = (),
                  judgements: Sequence[Mapping[str, Any]] = (),
                  gap_change: Sequence[Mapping[str, Any]] = (),
                  comparison: Mapping[str, Any] | None = None,
                  attribution: Mapping[str, Mapping[str, Any] | None] | None = None) -> ReportDocument:
    """The report of one or more stored runs.

    runs: records with ``label``, ``run_dir``, ``protocol`` (dict), ``fingerprint``, ``counts`` ({samples,
    failed}), ``summary``, ``occlusion_accuracy`` and ``domain_gap`` (record lists as in summary.json),
    ``metadata`` (run metadata). metrics: the headline metrics shown. phases: gap rows across curriculum phases
    (or data-engine rounds): ``label``, ``metric``, ``figure``, ``estimate``, ``low``, ``high``.
    engine_rounds: data-engine round rows (``round``, ``images``, ``accepted``, ``accept_rate``/``_low``/``_high``,
    ``cost_per_accepted``, ``agreement_accept``, ``failure_<mode>`` shares), shown as a table when given.
    judgements: sections from `judgement_sections` (human preference, rubric QC), placed after the breakdowns.
    gap_change: rows of `evaluate.summary.gap_change` (a training run's gap_change.csv), shown under the gap.
    comparison: `evaluate.compare.Comparison.to_dict()` of the last run (B) against the first (A), when one was
    computed: the verdict then states B against A (`decision_sentence`, regressions and improvements) and the
    Metrics section adds the "B against A" table; without it the verdict says that no comparison was made.
    thumbnails: `thumbs_block` items of the last run's worst scored samples.
    attribution: ``{run label: evaluate.attribution.gap_attribution record or None}``; a "Gap by shift" section
    follows the gap when a record is given (the results record ``shift_*`` intensities).
    A "Visible and hidden surfaces" section (`visibility_section`) follows when a run's summary holds the
    visibility split's columns (protocol metric "visibility"), with the change from the first run to the last
    when `comparison` holds them too.
    """
    if not runs:
        raise ValueError("runs_document needs at least one run")
    labels = [r["label"] for r in runs]
    last = runs[-1]
    gallery = (f"The worst scored samples of {last['label']} on {metrics[0] if metrics else 'the headline metric'}, "
               f"prediction beside ground truth (samples that failed are listed under Failed samples, with the "
               f"reason). {THUMBS_FRAME}")
    sections = _present(_runs_metrics_section(runs, metrics, comparison), _runs_strata_section(runs, metrics),
                        _runs_gap_section(runs, metrics, phases, phase_label, gap_change), attribution_section(attribution),
                        _engine_section(engine_rounds), visibility_section(runs, comparison),
                        _runs_occlusion_section(runs), _runs_category_section(runs, metrics),
                        [dict(j) for j in judgements], _failed_section(runs), _gallery_section(thumbnails, gallery),
                        _runs_methods_section(runs, metrics, phases, substitutes, comparison))
    return {"title": title or ("sam3d-eval report: " + ", ".join(labels)), "subtitle": f"{len(runs)} run(s)",
            "generated": _now(), "verdict": _runs_verdict(runs, metrics, phases, phase_label, notes, comparison),
            "sections": sections}


# ----------------------------------------------------------------------------------------------------------
# human judgements: preference votes and rubric ratings


def _int(v: Any) -> dict[str, str]:
    return cell("-" if v is None else str(v), "num")


def _zero(v: Any) -> Any:
    # centred log-strengths print as 7.5e-17 where the fit put exactly the mean
    return 0.0 if isinstance(v, float) and abs(v) < 1e-12 else v


def _human_preference_section(pref: Mapping[str, Any]) -> dict[str, Any]:
    c, s = pref["counts"], pref["settings"]
    conf = s.get("confidence", 0.95)
    board = list(pref["leaderboard"])
    blocks: list[dict[str, Any]] = []
    rows = [[cell(str(i + 1), "num"), str(r["model"]), cell(fmt_ci(r["elo"], r.get("elo_low"), r.get("elo_high"), 1), "num"),
             cell(fmt_ci(_zero(r["log_strength"]), r.get("log_strength_low"), r.get("log_strength_high"), 3), "num"),
             _int(r["wins"]), _int(r["losses"]), _int(r["ties"])] for i, r in enumerate(board)]
    cluster = " x ".join(s.get("cluster") or []) or "vote"
    blocks.append({"type": "table", "caption": "Bradley-Terry leaderboard",
                   "header": ["rank", "model", f"Elo [{conf:.0%} CI]", f"log-strength [{conf:.0%} CI]", "wins", "losses", "ties"],
                   "rows": rows, "note": (
                       f"Maximum-likelihood Bradley-Terry strengths (ties counted {s.get('ties')}), log-strengths centred "
                       f"to mean 0; Elo = 400/ln(10) x log-strength + 1000 (400 points = 10:1 odds). Percentile bootstrap "
                       f"intervals, {s.get('bootstrap')} resamples clustered by {cluster} (seed {s.get('seed')})"
                       + (f", regularization {s['regularization']:g}" if s.get("regularization") else "") + ".")})
    if any(r.get("elo_low") is not None for r in board):
        blocks.append(_fig_block(interval_figure(
            board, value="elo", low="elo_low", high="elo_high", label="model", zero=1000.0,
            title=f"Bradley-Terry Elo with {conf:.0%} clustered bootstrap intervals", xlabel="Elo (1000 = mean strength)")))
    rows = [[str(r["model"]), str(r["opponent"]), _int(r["votes"]), _int(r["wins"]), _int(r["losses"]), _int(r["ties"]),
             cell(fmt_rate(r["rate"], r["low"], r["high"]), "num"), cell(fmt_p(r["pvalue"]), "num"),
             cell(fmt_rate(r["rate_ties_half"], r["low_ties_half"], r["high_ties_half"]), "num"),
             _int(r.get("items")), _int(r.get("raters"))] for r in pref["pairwise"]]
    blocks.append({"type": "table", "caption": "Pairwise win rates",
                   "header": ["model", "vs", "votes", "wins", "losses", "ties", f"win rate, ties apart [{conf:.0%} Wilson]",
                              "binomial p", "win rate, ties as half", "items", "raters"], "rows": rows,
                   "note": "Ties apart: wins / (wins + losses), exact two-sided binomial p against 0.5; ties as half: "
                           "(wins + ties/2) / votes. Wilson intervals treat votes as independent."})
    rows = [[str(r["rater_id"]), _int(r["votes"]), _int(r["ties"]), _int(r["shared"]), cell(fmt_rate(r["agreement"]), "num"),
             cell(fmt_rate(r["consistency"]), "num"), _int(r["circular_triads"])] for r in pref["raters"]]
    blocks.append({"type": "table", "caption": "Raters", "header": ["rater", "votes", "ties", "shared", "agreement",
                                                                   "consistency", "circular triads"], "rows": rows,
                   "note": "Agreement: share of the rater's votes equal to the majority of the other raters on the same item "
                           "and pair (shared = votes with such a majority). Consistency: share of the rater's decisive votes "
                           "for the leaderboard's stronger model. Circular triads: A>B, B>C, C>A by one rater on one item."})
    a = pref.get("agreement") or {}
    blocks.append({"type": "dl", "items": [
        ["inter-rater agreement", f"{fmt(a.get('alpha'), 3)} ({a.get('method', 'Krippendorff alpha, nominal')}) over "
                                  f"{a.get('units_shared', '-')} (item, pair) units rated more than once"
                                  + (f"; {a['note']}" if a.get("note") else "")]]
                   + [["note", str(n)] for n in pref.get("notes") or []]})
    return {"id": "human-preference", "title": "Human preference", "blocks": blocks, "intro": [
        f"{c['votes']} pairwise votes on {c['items']} items by {c['raters']} raters over {c['models']} models "
        f"({c['ties']} ties)."]}


def _rubric_section(rub: Mapping[str, Any]) -> dict[str, Any]:
    d = rub["definitions"]
    thr, fail, near = d["accept_threshold"], d["fail_below"], d["near_margin"]
    accept = list(rub["accept"])
    conf = accept[0].get("confidence", 0.95) if accept else 0.95
    blocks: list[dict[str, Any]] = []
    rows = [[str(r.get("round", "all")), _int(r["items"]), _int(r["accepted"]),
             cell(fmt_rate(r["rate"], r["low"], r["high"]), "num"), _int(r.get("ratings")),
             cell(fmt_rate(r.get("rating_rate"), r.get("rating_low"), r.get("rating_high")), "num"),
             _int(r["compensatory"]), _int(r["near_threshold"]), _int(r.get("split_items"))] for r in accept]
    blocks.append({"type": "table", "caption": "Accept rate per round",
                   "header": ["round", "items", "accepted", f"accept rate [{conf:.0%} Wilson]", "ratings",
                              "per rating", "compensatory", "near threshold", "split items"], "rows": rows,
                   "note": f"An item is accepted when the mean of its raters' sums is >= {thr:g}/40 (the unit of the accept "
                           f"rate; per rating: each rating on its own). Compensatory: accepting ratings with a criterion "
                           f"below {fail:g}. Near threshold: decisions within +-{near:g} points of {thr:g}. Split items: "
                           "raters disagree on accept."})
    if len(accept) > 1:
        blocks.append(_fig_block(interval_figure(
            [{**r, "label": f"round {r.get('round')}"} for r in accept], value="rate", low="low", high="high",
            label="label", zero=None, title=f"Accept rate per round, {conf:.0%} Wilson intervals", xlabel="accept rate (items)")))
    rows = [[r["target"], str(r["method"]), cell(fmt(r["value"], 3), "num"), cell(fmt(r.get("krippendorff_alpha"), 3), "num"),
             _int(r.get("units")), _int(r.get("raters")), r.get("note") or ""] for r in rub["agreement"]]
    blocks.append({"type": "table", "caption": "Agreement per criterion and on the accept decision",
                   "header": ["target", "method", "value", "Krippendorff alpha", "units", "raters", "note"], "rows": rows,
                   "note": "Method by design. Scores (weighted by the squared difference on the 0-10 scale): two raters on "
                           "every unit -> Cohen's kappa with quadratic weights over 0..10; three or more raters or missing "
                           "ratings -> Krippendorff's interval alpha. Accept: two raters -> Cohen's kappa; three or more, "
                           "complete -> Fleiss' kappa; missing ratings -> Krippendorff's nominal alpha. Krippendorff's alpha "
                           "is given for every case. Unit: (round, item)."})
    by_round = [r for r in rub.get("agreement_by_round") or [] if r["target"] == "accept"]
    if len(by_round) > 1:
        blocks.append({"type": "table", "caption": "Agreement on the accept decision per round",
                       "header": ["round", "method", "value", "Krippendorff alpha", "units"],
                       "rows": [[str(r["round"]), str(r["method"]), cell(fmt(r["value"], 3), "num"),
                                 cell(fmt(r.get("krippendorff_alpha"), 3), "num"), _int(r.get("units"))] for r in by_round]})
    mix = list(rub["failure_mix"])
    if mix:
        modes = list(d.get("failure_modes") or dict.fromkeys(r["mode"] for r in mix))
        per_round: dict[Any, dict[str, Any]] = {}
        for r in mix:
            per_round.setdefault(r["round"], {"ratings": r.get("ratings"), "failing": 0})[r["mode"]] = r
            per_round[r["round"]]["failing"] += r.get("count") or 0
        totals = {k: (f"{v['failing']} fails / {v['ratings']}" if v["failing"] else "no fails") for k, v in per_round.items()}
        blocks.append(_fig_block(stacked_bar_figure(
            mix, x="round", stack="mode", value="share_of_failures", order=modes, totals=totals,
            title="Failure-mode mix per round", ylabel="share of failing criteria")))
        rows = [[str(k), _int(v.get("ratings"))] + [cell(f"{v[m]['count']} ({fmt_rate(v[m]['share'])})" if m in v else "-", "num")
                                                    for m in modes] for k, v in per_round.items()]
        blocks.append({"type": "table", "caption": "Failing criteria per round", "header": ["round", "ratings"] + modes,
                       "rows": rows, "note": f"Count of ratings with each failure mode (a criterion below {fail:g}) and, in "
                                             "brackets, its share of the round's ratings; the figure stacks each mode's share "
                                             "of the round's failing criteria."})
    crit = list(d.get("criteria") or [])
    if rub.get("raters") and crit:
        blocks.append({"type": "table", "caption": "Rater bias", "header": ["rater", "units"] + crit,
                       "rows": [[str(r["rater_id"]), _int(r.get("units"))]
                                + [cell("-" if r.get(k) is None else f"{r[k]:+.2f}", "num") for k in crit]
                                for r in rub["raters"]],
                       "note": "Mean of the rater's score minus the mean of the other raters' scores on the same unit, per "
                               "criterion (points; units rated by someone else too)."})
    n_items = sum(r["items"] for r in accept)
    return {"id": "rubric-qc", "title": "Rubric QC", "blocks": blocks, "intro": [
        f"{n_items} rated items over {len(accept)} round(s); four criteria ({', '.join(crit)}) scored 0-10, accepted at "
        f"a sum >= {thr:g}."]}


def judgement_sections(preference: Mapping[str, Any] | None = None,
                       rubric: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The "Human preference" and "Rubric QC" report sections, each present when its record is given
    (`preference_summary(...).to_dict()`, `rubric_summary(...).to_dict()`)."""
    out = []
    if preference:
        out.append(_human_preference_section(preference))
    if rubric:
        out.append(_rubric_section(rubric))
    return out


def preference_document(preference: Mapping[str, Any] | None = None, rubric: Mapping[str, Any] | None = None, *,
                        inputs: Mapping[str, Any] | None = None, title: str | None = None) -> ReportDocument:
    """A report of human judgements alone: verdict, `judgement_sections`, and the inputs read."""
    if not preference and not rubric:
        raise ValueError("preference_document needs a preference or a rubric record")
    pts = []
    if preference:
        top = preference["leaderboard"][0]
        pts.append(f"Bradley-Terry leader: {top['model']}, Elo {fmt_ci(top['elo'], top.get('elo_low'), top.get('elo_high'), 1)} "
                   f"({preference['counts']['votes']} votes, {preference['counts']['models']} models).")
    if rubric:
        for r in rubric["accept"]:
            pts.append(f"round {r.get('round')}: accept rate {fmt_rate(r['rate'], r['low'], r['high'])} "
                       f"({r['accepted']}/{r['items']} items), {r['compensatory']} compensatory, "
                       f"{r['near_threshold']} near threshold.")
    sections = judgement_sections(preference, rubric)
    sections.append({"id": "inputs", "title": "Inputs", "blocks": [{"type": "dl", "items": [
        [k, str(v)] for k, v in (inputs or {}).items() if v is not None] or [["inputs", "not recorded"]]}]})
    what = " and ".join(w for w, x in (("preference", preference), ("rubric QC", rubric)) if x)
    return {"title": title or f"sam3d-eval human judgements: {what}", "subtitle": what, "generated": _now(),
            "verdict": {"level": "info", "headline": pts[0] if pts else what, "points": pts[1:]}, "sections": sections}
