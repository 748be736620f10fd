"""Scoring warnings against labels, and three fixed-rule baselines to score next to the detectors.

* :mod:`~elderwatch.evaluation.scoring`: the scoring rule, :func:`evaluate` -> :class:`EvaluationReport`;
* :mod:`~elderwatch.evaluation.baselines`: ``kizuki``, ``shanghai``, ``seoul`` -> :func:`run_baseline`;
* :mod:`~elderwatch.evaluation.inputs`: :func:`load_inputs` loads a data set once for many runs;
* :mod:`~elderwatch.evaluation.report`: the plain-text table; ``elderwatch evaluate`` is the command.
"""

from elderwatch.evaluation.baselines import (
    BASELINES,
    Span,
    run_baseline,
    run_baseline_rows,
    run_baselines,
    scan_readings,
)
from elderwatch.evaluation.files import EventLabel, load_households, load_labels, load_manifest, load_warnings
from elderwatch.evaluation.inputs import EvaluationInputs, load_inputs
from elderwatch.evaluation.report import format_reports
from elderwatch.evaluation.scoring import EvaluationReport, evaluate, household_months

__all__ = ["BASELINES", "EvaluationInputs", "EvaluationReport", "EventLabel", "Span", "evaluate", "format_reports",
           "household_months", "load_households", "load_inputs", "load_labels", "load_manifest", "load_warnings",
           "run_baseline", "run_baseline_rows", "run_baselines", "scan_readings"]
