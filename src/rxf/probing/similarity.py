"""How far fine-tuning moved a model's representations: linear CKA and effective rank.

Both read the features of :mod:`rxf.probing.features` (same layer and pooling as the probes) on
a fixed probe set of texts, one row per example.

* **Linear CKA** (Kornblith et al., 2019, "Similarity of Neural Network Representations
  Revisited", eq. for the linear kernel): with column-centred X (n×p) and Y (n×q),
  ``CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)``. It is 1 for identical representations, invariant to
  orthogonal transforms and isotropic scaling. Plain CKA is biased upwards when n is not much
  larger than the dimensions, so we also report the **debiased** CKA, which replaces each HSIC
  by the unbiased estimator of Song et al. (2012) (as in Nguyen, Raghu & Kornblith, 2021); it is
  near 0 for independent representations even at n ≈ p.
* **Effective rank** (Roy & Vetterli, 2007): ``exp(H(p))`` with ``p_i = σ_i / Σ_j σ_j`` the
  normalised singular values of the column-centred feature matrix and H the Shannon entropy (nats).
  It lies between 1 (all examples on one line) and min(n, p) (a flat spectrum); a drop after
  fine-tuning means the representations occupy fewer directions (one face of "collapse").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rxf.errors import RxfError
from rxf.probing.features import FeatureConfig, encode


def _centred(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise RxfError(f"representations must be a 2-D array (examples × features), got shape {x.shape}")
    return x - x.mean(axis=0, keepdims=True)


def _unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC of two Gram matrices (their diagonals are ignored)."""
    n = k.shape[0]
    k = k.copy()
    l = l.copy()
    np.fill_diagonal(k, 0.0)
    np.fill_diagonal(l, 0.0)
    ones_k = k.sum(axis=0)
    ones_l = l.sum(axis=0)
    value = np.sum(k * l) + ones_k.sum() * ones_l.sum() / ((n - 1) * (n - 2)) - 2.0 * ones_k @ ones_l / (n - 2)
    return float(value / (n * (n - 3)))


def linear_cka(x: np.ndarray, y: np.ndarray, *, debiased: bool = False) -> float:
    """Linear CKA between two representations of the same n examples (rows)."""
    x = _centred(x)
    y = _centred(y)
    if x.shape[0] != y.shape[0]:
        raise RxfError(f"CKA needs the same examples in both representations, got {x.shape[0]} and {y.shape[0]} rows")
    if debiased:
        if x.shape[0] < 4:
            raise RxfError(f"debiased CKA needs at least 4 examples, got {x.shape[0]}")
        k, l = x @ x.T, y @ y.T
        denominator = np.sqrt(max(_unbiased_hsic(k, k), 0.0) * max(_unbiased_hsic(l, l), 0.0))
        return float(_unbiased_hsic(k, l) / denominator) if denominator > 0 else 0.0
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else 0.0


def effective_rank(x: np.ndarray) -> float:
    """Roy & Vetterli's effective rank: exp of the entropy of the normalised singular values (centred rows)."""
    singular = np.linalg.svd(_centred(x), compute_uv=False)
    total = singular.sum()
    if total <= 0:
        return 1.0
    p = singular[singular > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def similarity_report(reference: np.ndarray, features: np.ndarray) -> dict[str, float]:
    """CKA (plain and debiased) of ``features`` to ``reference``, and the effective rank of both."""
    return {
        "cka": linear_cka(reference, features),
        "cka_debiased": linear_cka(reference, features, debiased=True),
        "effective_rank": effective_rank(features),
        "effective_rank_reference": effective_rank(reference),
    }


def similarity_tracker(
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None,
    reference: np.ndarray,
    config: FeatureConfig,
):
    """A TrainerCallback that measures CKA to ``reference`` and effective rank at every evaluation.

    ``reference`` holds the features of ``texts`` under the model to compare with (usually the
    pre-trained one), computed with the same ``config``. Records land in ``tracker.history`` as
    ``{"step", "epoch", "cka", "cka_debiased", "effective_rank", "effective_rank_reference"}``.
    Pass it to ``rxf.train.run_training(config, extra_callbacks=[tracker])`` or any Trainer.
    """
    from transformers import TrainerCallback

    if len(reference) != len(texts):
        raise RxfError(f"reference has {len(reference)} rows for {len(texts)} texts")

    class SimilarityTracker(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict[str, Any]] = []

        def on_evaluate(self, args, state, control, model=None, **kwargs):
            if model is None:
                return
            features = encode(model, tokenizer, texts, text_pairs, config)
            self.history.append({"step": state.global_step, "epoch": state.epoch, **similarity_report(reference, features)})

    return SimilarityTracker()
