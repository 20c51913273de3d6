"""Statistics for evaluation results: intervals, bootstraps, paired tests, preference models, agreement,
feature-space gap and study sizing. Pure functions on numpy arrays and pandas frames; imports numpy,
scipy, statsmodels and pandas only (docs/architecture.md)."""

from ._checks import StatsInputError
from .bootstrap import (
    BootstrapResult,
    bootstrap_ci,
    bootstrap_interval,
    clustered_bootstrap,
    paired_bootstrap,
    studentized_interval,
    two_sample_bootstrap,
)
from .intervals import WinRate, binomial_test, wilson_interval, win_rate
from .paired import Adjusted, WilcoxonResult, benjamini_hochberg, holm, wilcoxon_signed_rank
from .paired import McNemarResult, SignFlipResult, mcnemar_exact, sign_flip_test
from .agreement import cohens_kappa, fleiss_kappa, krippendorff_alpha
from .preference import bradley_terry
from .gap import KIDResult, MMDResult, PADResult, kid, mmd2_unbiased, proxy_a_distance
from .power import StudySize, votes_needed, win_rate_claim_power
from .runs import iqm, probability_of_improvement, stratified_bootstrap_ci
from .two_level import TwoLevelResult, bootstrap_pvalue, two_level_bootstrap

__all__ = [
    "StatsInputError",
    "BootstrapResult",
    "bootstrap_ci",
    "bootstrap_interval",
    "clustered_bootstrap",
    "paired_bootstrap",
    "studentized_interval",
    "two_sample_bootstrap",
    "WinRate",
    "binomial_test",
    "wilson_interval",
    "win_rate",
    "Adjusted",
    "WilcoxonResult",
    "benjamini_hochberg",
    "holm",
    "wilcoxon_signed_rank",
    "McNemarResult",
    "mcnemar_exact",
    "SignFlipResult",
    "sign_flip_test",
    "cohens_kappa",
    "fleiss_kappa",
    "krippendorff_alpha",
    "bradley_terry",
    "KIDResult",
    "MMDResult",
    "PADResult",
    "kid",
    "mmd2_unbiased",
    "proxy_a_distance",
    "StudySize",
    "votes_needed",
    "win_rate_claim_power",
    "iqm",
    "probability_of_improvement",
    "stratified_bootstrap_ci",
    "TwoLevelResult",
    "bootstrap_pvalue",
    "two_level_bootstrap",
]
