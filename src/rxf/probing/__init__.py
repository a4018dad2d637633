"""Representational collapse (the paper's Section 4): linear probes, chains, cycles, CKA, effective rank.

    from rxf.probing import ProbeExperimentConfig, run_generalization
    run_generalization(ProbeExperimentConfig(data_dir="../shared/data/glue", output_dir="runs/fig3"))

* :mod:`rxf.probing.features`: which representation (layer, pooling) and its disk cache;
* :mod:`rxf.probing.probe`: the linear probe (scikit-learn);
* :mod:`rxf.probing.similarity`: linear CKA, effective rank, and a TrainerCallback logging both;
* :mod:`rxf.probing.experiments`: Figures 3 (generalization), 4 (chain) and 5 (cycle);
* :mod:`rxf.probing.report`: tables and figures.
"""

from rxf.probing.experiments import (
    EXPERIMENT_RUNNERS,
    ProbeExperimentConfig,
    ProbeSession,
    run_chain,
    run_cycle,
    run_generalization,
)
from rxf.probing.features import FeatureConfig, FeatureExtractor, encode, load_encoder
from rxf.probing.probe import ProbeConfig, ProbeFit, fit_probe
from rxf.probing.similarity import effective_rank, linear_cka, similarity_report, similarity_tracker

__all__ = [
    "EXPERIMENT_RUNNERS",
    "FeatureConfig",
    "FeatureExtractor",
    "ProbeConfig",
    "ProbeExperimentConfig",
    "ProbeFit",
    "ProbeSession",
    "effective_rank",
    "encode",
    "fit_probe",
    "linear_cka",
    "load_encoder",
    "run_chain",
    "run_cycle",
    "run_generalization",
    "similarity_report",
    "similarity_tracker",
]
