"""Plain-text tables: aligned columns for a terminal or a .txt file, from JSON-ready payloads.

`grid` aligns rows of cells; `comparison_text` writes a comparison (`Comparison.to_dict()`) as the tables
``sam3d-eval compare`` prints and the demo writes to compare.txt. No matplotlib, no HTML: pure strings.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from .tables import fmt, fmt_ci, fmt_p, fmt_rate, gap_share, has_decomposition, mix_words

__all__ = ["comparison_text", "failures_text", "grid"]


def grid(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Aligned lines: the first column left-aligned, the others right-aligned; rows shorter than the header
    (a failed sample and its reason) are printed as they are after the first column."""
    full = [r for r in rows if len(r) == len(header)]
    widths = [max([len(header[i])] + [len(r[i]) for r in full]) for i in range(len(header))]
    widths[0] = max([widths[0]] + [len(r[0]) for r in rows])

    def line(r):
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append(line(r) if len(r) == len(header) else f"{r[0].ljust(widths[0])}  {'  '.join(r[1:])}")
    return out


def comparison_text(c: Mapping[str, Any]) -> str:
    """The comparison as plain-text tables (what ``sam3d-eval compare`` prints and the demo writes to
    compare.txt): verdict, failures, the overall metrics (means, then the robust figures), the preference
    metric per stratum, the gap and what each side's gap is made of (covariate mix, matched figure, GT wear),
    outliers, the preference and the samples left out.

    Args:
        c: the JSON-ready payload of a comparison (`evaluate.compare.Comparison.to_dict()`).

    Returns:
        The text, lines joined by newlines.
    """
    a, b = c["labels"]
    t = c["table"]
    st = c["settings"]
    several = max(st.get("runs", [1, 1])) > 1
    lines = [c["verdict"], ""]
    lines += failures_text(c)
    lines.append("")

    def pct(v, lo=None, hi=None):
        if v is None or v != v:
            return "-"
        if lo is None or lo != lo:
            return f"{100 * v:+.1f}%"
        return f"{100 * v:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"

    def flag(r):
        return ("worse" if r["better"] == "A" else "better") if r["significant"] else ""

    head = ["metric", "n", f"A {a}", f"B {b}", "delta B-A [95% CI]", "rel", "test p", "p Holm", ""]
    overall = [r for r in t if r["stratum"] == "all"]
    lines += grid(head, [[r["metric"], str(r["n"]), fmt_ci(r["mean_a"], r["low_a"], r["high_a"]),
                           fmt_ci(r["mean_b"], r["low_b"], r["high_b"]), fmt_ci(r["delta"], r["delta_low"], r["delta_high"]),
                           pct(r["rel_delta"]), fmt_p(r["pvalue"]), fmt_p(r["p_holm"]), flag(r)]
                          for r in overall])
    lines.append("")
    robust_head = ["metric", "verdict on", "median B-A [95% CI]", "geo-mean ratio B/A [95% CI]", "P(B better) [95% CI]"]
    if several:
        robust_head += [f"A runs min-max", f"B runs min-max"]
    rows = []
    for r in overall:
        row = [r["metric"], r["figure"], fmt_ci(r["median_delta"], r["median_delta_low"], r["median_delta_high"]),
               pct(r["geo_change"], r["geo_change_low"], r["geo_change_high"]),
               fmt_ci(r["prob_improvement"], r["prob_improvement_low"], r["prob_improvement_high"], 2)]
        if several:
            row += [f"{fmt(r['run_min_a'])}-{fmt(r['run_max_a'])}", f"{fmt(r['run_min_b'])}-{fmt(r['run_max_b'])}"]
        rows.append(row)
    lines += grid(robust_head, rows)
    strata = [r for r in t if r["stratum"] != "all" and r["metric"] == c["preference"]["metric"]]
    if strata:
        lines.append("")
        lines += grid(["stratum: metric", "n", "units", f"A {a}", f"B {b}", "delta B-A [95% CI]", "geo-mean ratio",
                        "test p", "p Holm", ""],
                       [[f"{r['stratum']}={r['level']}: {r['metric']}", str(r["n"]), str(r["n_units"]),
                         fmt_ci(r["mean_a"], r["low_a"], r["high_a"]), fmt_ci(r["mean_b"], r["low_b"], r["high_b"]),
                         fmt_ci(r["delta"], r["delta_low"], r["delta_high"]), pct(r["geo_change"]),
                         fmt_p(r["pvalue"]), fmt_p(r["p_holm"]), flag(r)] for r in strata])
    unit = (f"units: {st['cluster']} groups ({st['units']} units; each resampled whole)" if st.get("cluster")
            else f"units: samples ({st['units']})")
    runs = st.get("runs", [1, 1])
    failed_as = ("failed samples scored at their side's worst value" if st.get("failed_as") == "worst"
                 else "failed samples excluded from the metric table (--failed-as exclude)")
    lines.append(
        f"{runs[0]} run(s) of A, {runs[1]} of B; {unit}; {failed_as}. "
        + ("Intervals: two-level bootstrap (runs within each side, units shared by both); " if several else
           "Intervals: bootstrap over units (the mean difference: paired, studentized below 50 units); ")
        + f"test p of the verdict figure, Holm per stratification (alpha {st['alpha']:g}).")
    if several and min(runs) < 5:
        r = min(runs)
        lines.append(f"note: with {r} run(s) on a side, resampling runs understates the between-run variance by "
                     f"(R-1)/R = {(r - 1) / r:.2f}: the intervals are optimistic; 5 or more seeds per side give "
                     "intervals to ship on (the runs' min-max is shown beside them)")
    gap = c.get("gap") or {}
    if gap.get("A"):
        lines.append("")
        gb = {r["metric"]: r for r in gap.get("B") or []}
        rows = []
        for r in gap["A"]:
            if r["metric"] in st["regression_metrics"] or r["metric"] == "accuracy":
                q = gb.get(r["metric"], {})
                rows.append([r["metric"], r["figure"], r.get("design") or "", fmt_ci(r["estimate"], r["low"], r["high"]),
                             fmt_ci(q.get("estimate"), q.get("low"), q.get("high"))])
        lines += grid(["gap metric", "figure", "design", f"A {a}", f"B {b}"], rows)
        lines += _gap_parts_text(c)
    elif st.get("gap_note"):
        lines += ["", st["gap_note"]]
    outliers = c.get("outliers") or []
    if outliers:
        lines.append("")
        lines.append(f"outliers (more than {st.get('outlier_factor', 10):g}x their side's median; kept in every figure): "
                     f"{len(outliers)}")
        for o in outliers[:8]:
            lines.append(f"  {o['metric']} {o['side']} {o['sample_id']}: {fmt(o['value'])} ({o['ratio']:.0f}x the median "
                         f"{fmt(o['median'])})")
        if len(outliers) > 8:
            lines.append(f"  ... {len(outliers) - 8} more (--json lists them all)")
    p = c["preference"]
    if p.get("samples"):
        lines.append("")
        lines.append(f"per-sample preference on {p['metric']}: B better on {p['wins']}, A better on {p['losses']}, "
                     f"ties {p['ties']}; win rate of B {fmt_rate(p['rate'], p['low'], p['high'])}, "
                     f"{p.get('test', 'binomial')} p {fmt_p(p['pvalue'])}"
                     + (" (twins resampled together)" if p.get("interval") == "bootstrap over units" else ""))
    if c.get("votes"):
        v = c["votes"]
        lines.append(f"human votes: {v['votes']} on {v['items']} items: B preferred {v['wins']}, A {v['losses']}, ties "
                     f"{v['ties']}; win rate of B {fmt_rate(v['rate'], v['low'], v['high'])}")
    s = c["samples"]
    left = [("failed only in A", s["failed_only_A"]), ("failed only in B", s["failed_only_B"]),
            ("failed in both", s["failed_both"]), ("only in A", s["only_in_A"]), ("only in B", s["only_in_B"]),
            ("not in every run", s.get("not_in_every_run", []))]
    lines.append("")
    lines.append(f"samples: {s['common']} in both, {s['both_ok']} scored ok by both")
    for what, ids in left:
        if ids:
            lines.append(f"  {what}: {len(ids)}: {', '.join(ids[:8])}{' ...' if len(ids) > 8 else ''}")
    return "\n".join(lines)


def _gap_parts_text(c: Mapping[str, Any]) -> list[str]:
    """What each side's gap is made of (`evaluate.summary.domain_gap_runs` decomposition columns), for the
    gap metrics of `comparison_text`; [] when neither side has a matched or wear-free figure."""
    a, b = c["labels"]
    st = c["settings"]
    gap = c.get("gap") or {}
    sides = [(a, {r["metric"]: r for r in gap.get("A") or []}), (b, {r["metric"]: r for r in gap.get("B") or []})]
    shown = [m for m in sides[0][1] if m in st["regression_metrics"] or m == "accuracy"]
    if not any(has_decomposition(s[m]) for _, s in sides for m in shown if m in s):
        return []
    matching = next((s[m].get("matching") for _, s in sides for m in shown if m in s and s[m].get("matching")), None)
    mix = mix_words(matching)

    def part(r, k):
        text = fmt_ci(r.get(k), r.get(f"{k}_low"), r.get(f"{k}_high"))
        share = gap_share(r, k)
        return text + ("" if share is None else f" ({100 * share:.0f}%)")

    rows = []
    for m in shown:
        for label, s in sides:
            r = s.get(m)
            if r is None:
                continue
            cover = r.get("matched_coverage")
            rows.append([f"{m} {label}", part(r, "covariate"), fmt_ci(r.get("matched"), r.get("matched_low"), r.get("matched_high")),
                         "-" if cover is None or cover != cover else f"{100 * cover:.0f}%", part(r, "wear")])
    return ["", f"what the gap is made of ({mix} mix = raw - matched, the synthetic side reweighted to the real side's "
                f"{mix} cells; GT wear = raw - wear-free; in brackets a part's share of the raw excess, where the raw "
                "interval excludes no gap; intervals from the gap's own resamples)",
            *grid(["gap metric, side", f"{mix} mix", "matched", "coverage", "GT wear"], rows)]


def failures_text(c: Mapping[str, Any]) -> list[str]:
    """The failure lines printed above the metric table, from a comparison payload (`comparison_text`)."""
    f = c.get("failures") or {}
    if not f:
        return []
    a, b = c["labels"]
    clustered = f.get("unit") == "cluster"
    unit = "pairs" if clustered else "samples"
    per_run = " per run" if max(f["runs"]) > 1 else ""

    def side(k):
        lo, hi = f.get(f"rate_{k}_low"), f.get(f"rate_{k}_high")
        ci = f" [{100 * lo:.1f}%, {100 * hi:.1f}%]" if lo is not None and lo == lo else ""
        text = f"{f[f'failed_{k}']:.4g} of {f['samples']} samples"
        if clustered:
            text += f", in {f[f'failed_units_{k}']:.4g} of {f['units']} pairs"
        return text + f"{per_run} ({100 * f[f'rate_{k}']:.1f}%{ci})"

    lines = [f"failures: A {a}: {side('a')}; B {b}: {side('b')}"]
    if f["test"] == "exact McNemar":
        line = (f"  exact McNemar test on the {unit} failed on one side only ({f['only_a']} only in A, {f['only_b']} "
                f"only in B): p {fmt_p(f['pvalue'])}, Holm {fmt_p(f.get('p_holm'))}")
    else:
        line = (f"  {f['test']} test of each {unit[:-1]}'s failure share over the runs, B - A ({f['only_a']} lower in "
                f"B, {f['only_b']} higher): p {fmt_p(f['pvalue'])}, Holm {fmt_p(f.get('p_holm'))}")
    n_disc = f["only_a"] + f["only_b"]
    if n_disc and f["min_attainable_p"] >= f["alpha"]:
        line += (f"; with {n_disc} discordant {unit} the exact test cannot reach p < {f['alpha']:g} "
                 f"(smallest p {f['min_attainable_p']:.3g})")
    if f["significant"]:
        line += f": {f['worse']} fails significantly more"
    lines.append(line)
    return lines
