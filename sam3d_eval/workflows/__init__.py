"""The application layer: what a notebook calls, and what the command line runs.

Plain functions composed from the layers below (data, models, evaluate, train, engine, report), each usable
from Python and tested directly; `sam3d_eval.cli` only parses arguments, prints and chooses exit codes.

- `run_recipe`: a training recipe end to end (benchmark, both stages, phase-boundary gaps, stage comparison).
- `compare_sides` and `write_comparison_report`: B against A, one or several runs per side, and its HTML.
- `report_runs`: the HTML report of stored runs, training folders and human judgements.
- `analyse_judgements`: preference votes and rubric ratings.
- `run_demo`: the whole method on the built-in benchmark.
"""

from .compare import CompareResult, compare_sides, side_label, write_comparison_report
from .demo import DEMO_RECIPE, DemoResult, run_demo
from .judgements import analyse_judgements
from .recipe import RecipeResult, check_init_from, run_recipe
from .report import report_runs, summarise_run

__all__ = ["CompareResult", "DEMO_RECIPE", "DemoResult", "RecipeResult", "analyse_judgements", "check_init_from",
           "compare_sides", "report_runs", "run_demo", "run_recipe", "side_label", "summarise_run",
           "write_comparison_report"]
