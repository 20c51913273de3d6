"""Reports from stored results: tables, figures and one self-contained HTML file (docs/compare-and-report.md).

Imports stats, render, io, structures and transforms of the package only; the analysis records it renders
come from the evaluation layer through the CLI (`sam3d-eval report`, `sam3d-eval compare --out`).
"""

from .build import (attribution_section, comparison_document, decision_sentence, gap_decomposition_sentence,
                    judgement_sections, methods_section, preference_document, runs_document, thumbs_block,
                    visibility_section)
from .figures import FigureImage, interval_figure, occlusion_figure, phase_gap_figure, stacked_bar_figure
from .html import ReportDocument, render_html, write_html
from .tables import METRIC_DEFINITIONS, definition, fmt, fmt_ci, fmt_p

__all__ = [
    "FigureImage",
    "METRIC_DEFINITIONS",
    "ReportDocument",
    "attribution_section",
    "comparison_document",
    "decision_sentence",
    "definition",
    "fmt",
    "fmt_ci",
    "fmt_p",
    "gap_decomposition_sentence",
    "interval_figure",
    "judgement_sections",
    "methods_section",
    "occlusion_figure",
    "phase_gap_figure",
    "preference_document",
    "render_html",
    "stacked_bar_figure",
    "runs_document",
    "thumbs_block",
    "visibility_section",
    "write_html",
]
