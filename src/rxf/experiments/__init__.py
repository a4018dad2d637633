"""Experiments built from run_training: fixed-budget sweeps with N seeds (``sweep``) and the paper's tables and plots (``report``).

Imported lazily by the CLI: optuna and matplotlib (the ``experiments`` extra) load only when used.
"""

from rxf.experiments.report import ReportConfig, make_report
from rxf.experiments.sweep import SEARCH_SPACES, Sweep, SweepConfig, load_records, run_sweep

__all__ = ["SEARCH_SPACES", "ReportConfig", "Sweep", "SweepConfig", "load_records", "make_report", "run_sweep"]
