"""The self-contained HTML file: one jinja2 template, inline CSS, figures as data URIs, no scripts.

A report *document* is plain data (`ReportDocument` is its shape), so the builders (`report.build`) can be
tested on their output and the template stays dumb:

    {"title", "subtitle", "generated",
     "verdict": {"level": "regression" | "improvement" | "neutral" | "info", "headline": str, "points": [str]},
     "sections": [{"id", "title", "intro": [str], "blocks": [block, ...]}, ...]}

Blocks: ``{"type": "table", "caption", "header": [str], "rows": [[cell]], "note"}`` (a cell is a string or
``{"text", "cls", "title"}``; classes ``worse``, ``better``, ``num``, ``muted``), ``{"type": "figure", "uri",
"alt", "caption"}``, ``{"type": "thumbs", "items": [{"title", "caption", "images": [{"label", "uri"}]}]}``
(``uri`` None prints "not rendered"), ``{"type": "dl", "items": [[term, text]]}``, ``{"type": "pre", "text"}``,
``{"type": "list", "items": [str]}``, ``{"type": "text", "text"}``.

Everything is escaped by jinja2's autoescape; nothing is fetched from the network when the file is opened
(no script, font, stylesheet or image URL other than ``data:``), and the print stylesheet keeps tables and
figures whole on A4/Letter pages.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, TypedDict

from ..atomic import write_text_atomic

__all__ = ["ReportDocument", "render_html", "write_html"]


class ReportDocument(TypedDict, total=False):
    title: str
    subtitle: str
    generated: str
    verdict: dict[str, Any]
    sections: list[dict[str, Any]]


CSS = """
:root { --fg: #1b1f24; --muted: #5b6570; --line: #d8dde3; --bg: #ffffff; --band: #f5f7f9;
        --bad: #b42318; --bad-bg: #fdecea; --good: #05603a; --good-bg: #e7f6ee; --info-bg: #eef4fb; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; color: var(--fg); background: var(--bg); line-height: 1.45;
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans",
                    "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5rem 1.25rem 3rem; }
header h1 { font-size: 1.55rem; margin: 0 0 .2rem; }
header p { margin: 0; color: var(--muted); }
nav { margin: .9rem 0 0; font-size: .9rem; }
nav a { color: #0b5cad; margin-right: .9rem; text-decoration: none; }
.verdict { margin: 1.1rem 0 1.4rem; padding: .9rem 1.1rem; border-radius: 6px; border-left: 6px solid; }
.verdict h2 { margin: 0 0 .35rem; font-size: 1.15rem; }
.verdict ul { margin: .2rem 0 0; padding-left: 1.2rem; }
.verdict.regression { background: var(--bad-bg); border-color: var(--bad); }
.verdict.improvement { background: var(--good-bg); border-color: var(--good); }
.verdict.neutral, .verdict.info { background: var(--info-bg); border-color: #2f6db5; }
section { margin-top: 1.8rem; }
section > h2 { font-size: 1.2rem; border-bottom: 2px solid var(--line); padding-bottom: .25rem; margin-bottom: .6rem; }
p.intro { margin: .3rem 0 .6rem; color: var(--muted); max-width: 80ch; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1rem; }
table { border-collapse: collapse; font-size: .85rem; min-width: 50%; }
caption { text-align: left; font-weight: 600; padding: 0 0 .35rem; font-size: .9rem; }
th, td { border-bottom: 1px solid var(--line); padding: .28rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--band); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.worse { color: var(--bad); font-weight: 600; }
td.better { color: var(--good); font-weight: 600; }
td.muted, .muted { color: var(--muted); }
tbody tr:nth-child(even) td { background: #fbfcfd; }
p.note { font-size: .8rem; color: var(--muted); margin: -.6rem 0 1rem; max-width: 90ch; }
figure { margin: .8rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: .82rem; color: var(--muted); margin-top: .25rem; }
.thumbs { display: grid; grid-template-columns: repeat(auto-fill, minmax(330px, 1fr)); gap: .9rem; }
.thumb { border: 1px solid var(--line); border-radius: 6px; padding: .5rem .6rem; break-inside: avoid; }
.thumb h3 { font-size: .9rem; margin: 0 0 .3rem; }
.thumb .pair { display: flex; flex-direction: column; gap: .3rem; }
.thumb .img-label { font-size: .75rem; color: var(--muted); }
.thumb img { width: 100%; height: auto; border: 1px solid #eceff2; display: block; }
.thumb .missing { font-size: .8rem; color: var(--muted); padding: .8rem; background: var(--band); }
.thumb p { font-size: .8rem; margin: .3rem 0 0; }
dl { display: grid; grid-template-columns: minmax(9rem, max-content) 1fr; gap: .25rem 1rem; font-size: .88rem; }
dt { font-weight: 600; } dd { margin: 0; }
pre { background: var(--band); padding: .6rem .8rem; border-radius: 4px; font-size: .78rem; overflow-x: auto;
      white-space: pre-wrap; word-break: break-word; }
footer { margin-top: 2.5rem; font-size: .8rem; color: var(--muted); border-top: 1px solid var(--line); padding-top: .6rem; }
@media print {
  html { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  section { break-inside: auto; }
  section > h2 { break-after: avoid; }
  .table-wrap { overflow: visible; }
  table, figure, .thumb, .verdict, dl { break-inside: avoid; }
  .thumbs { grid-template-columns: repeat(2, 1fr); }
  a { color: inherit; text-decoration: none; }
  .verdict, th, tbody tr:nth-child(even) td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
@page { margin: 14mm 12mm; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="sam3d-eval {{ version }}">
<title>{{ doc.title }}</title>
<style>{{ css }}</style>
</head>
<body>
<main>
<header>
<h1>{{ doc.title }}</h1>
{% if doc.subtitle %}<p>{{ doc.subtitle }}</p>{% endif %}
<nav aria-label="sections">{% for s in doc.sections %}<a href="#{{ s.id }}">{{ s.title }}</a>{% endfor %}</nav>
</header>
{% if doc.verdict %}
<div class="verdict {{ doc.verdict.level }}" role="status">
<h2>{{ doc.verdict.headline }}</h2>
{% if doc.verdict.points %}<ul>{% for p in doc.verdict.points %}<li>{{ p }}</li>{% endfor %}</ul>{% endif %}
</div>
{% endif %}
{% for s in doc.sections %}
<section id="{{ s.id }}">
<h2>{{ s.title }}</h2>
{% for p in s.intro or [] %}<p class="intro">{{ p }}</p>{% endfor %}
{% for b in s.blocks or [] %}
{% if b.type == "table" %}
<div class="table-wrap"><table>
{% if b.caption %}<caption>{{ b.caption }}</caption>{% endif %}
<thead><tr>{% for h in b.header %}<th scope="col">{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in b.rows %}<tr>{% for c in row %}{% if c is mapping %}<td class="{{ c.cls or '' }}"{% if c.title %} title="{{ c.title }}"{% endif %}>{{ c.text }}</td>{% else %}<td>{{ c }}</td>{% endif %}{% endfor %}</tr>
{% endfor %}
</tbody>
</table></div>
{% if b.note %}<p class="note">{{ b.note }}</p>{% endif %}
{% elif b.type == "figure" %}
<figure><img src="{{ b.uri }}" alt="{{ b.alt }}">{% if b.caption %}<figcaption>{{ b.caption }}</figcaption>{% endif %}</figure>
{% elif b.type == "thumbs" %}
<div class="thumbs">
{% for t in b["items"] %}<div class="thumb"><h3>{{ t.title }}</h3><div class="pair">
{% for im in t.images %}<div><div class="img-label">{{ im.label }}</div>{% if im.uri %}<img src="{{ im.uri }}" alt="{{ im.label }} of {{ t.title }}">{% else %}<div class="missing">{{ im.missing or "not rendered" }}</div>{% endif %}</div>
{% endfor %}</div>{% if t.caption %}<p>{{ t.caption }}</p>{% endif %}</div>
{% endfor %}
</div>
{% elif b.type == "dl" %}
<dl>{% for term, text in b["items"] %}<dt>{{ term }}</dt><dd>{{ text }}</dd>{% endfor %}</dl>
{% elif b.type == "pre" %}
<pre>{{ b.text }}</pre>
{% elif b.type == "list" %}
<ul>{% for it in b["items"] %}<li>{{ it }}</li>{% endfor %}</ul>
{% elif b.type == "text" %}
<p>{{ b.text }}</p>
{% endif %}
{% endfor %}
</section>
{% endfor %}
<footer>Generated by sam3d-eval {{ version }}{% if doc.generated %} on {{ doc.generated }}{% endif %}. Self-contained file: every figure is embedded; nothing is loaded from the network.</footer>
</main>
</body>
</html>
"""


def render_html(doc: ReportDocument) -> str:
    """The HTML text of a report document (module docstring)."""
    import jinja2

    from .. import __version__

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    # StrictUndefined would reject optional keys; give every optional key a value first.
    doc = dict(doc)
    doc.setdefault("subtitle", "")
    doc.setdefault("generated", "")
    doc.setdefault("verdict", None)
    sections = []
    for s in doc.get("sections", []):
        s = {"intro": [], "blocks": [], **s}
        blocks = []
        for b in s["blocks"]:
            b = {"caption": "", "note": "", "alt": "", **b}
            if b["type"] == "thumbs":
                b["items"] = [{"caption": "", **t, "images": [{"missing": None, **im} for im in t["images"]]}
                              for t in b["items"]]
            if b["type"] == "table":
                b["rows"] = [[({"cls": "", "title": "", **c} if isinstance(c, dict) else c) for c in row] for row in b["rows"]]
            blocks.append(b)
        s["blocks"] = blocks
        sections.append(s)
    doc["sections"] = sections
    if doc["verdict"] is not None:
        doc["verdict"] = {"points": [], "level": "info", **doc["verdict"]}
    return env.from_string(TEMPLATE).render(doc=doc, css=CSS, version=__version__)


def write_html(path: str | os.PathLike, doc: ReportDocument) -> pathlib.Path:
    """Render `doc` and write it to `path` atomically (temporary file renamed); returns the path."""
    return write_text_atomic(path, render_html(doc))
