"""rxf.metrics against hand-computed values on small fixed arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rxf import metrics
from rxf.errors import RxfError

LABELS = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 1])
IDS = np.array([1, 0, 0, 1, 1, 0, 1, 0, 1, 0])  # tp=4 tn=3 fp=1 fn=2


def logits_for(ids: np.ndarray, num_labels: int = 2) -> np.ndarray:
    """Logits whose argmax is ``ids``, with varied magnitudes."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(len(ids), num_labels))
    logits[np.arange(len(ids)), ids] = logits.max(axis=1) + 1.0 + rng.random(len(ids))
    return logits


def test_accuracy_f1_mcc_by_hand_from_ids_and_logits():
    tp, tn, fp, fn = 4, 3, 1, 2
    acc = (tp + tn) / 10
    f1 = 2 * tp / (2 * tp + fp + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    for preds in (IDS, logits_for(IDS), IDS.astype(float), IDS.reshape(-1, 1)):
        assert metrics.accuracy(preds, LABELS) == pytest.approx(acc)
        assert metrics.f1(preds, LABELS) == pytest.approx(f1)
        assert metrics.mcc(preds, LABELS) == pytest.approx(mcc)
    out = metrics.compute("f1_accuracy", logits_for(IDS), LABELS)
    assert out == pytest.approx({"accuracy": acc, "f1": f1, "f1_accuracy": (acc + f1) / 2})
    assert all(type(v) is float for v in out.values())
    assert metrics.glue_metrics("CoLA", IDS, LABELS) == pytest.approx({"mcc": mcc})
    assert metrics.glue_metrics("glue/rte", logits_for(IDS), LABELS) == pytest.approx({"accuracy": acc})


def test_multiclass_accuracy_and_macro_f1():
    labels = np.array([0, 1, 2, 2, 1, 0, 2])
    ids = np.array([0, 2, 2, 2, 1, 1, 0])
    per_class_f1 = []
    for c in range(3):
        tp = np.sum((ids == c) & (labels == c))
        fp = np.sum((ids == c) & (labels != c))
        fn = np.sum((ids != c) & (labels == c))
        per_class_f1.append(2 * tp / (2 * tp + fp + fn))
    out = metrics.compute("classification", logits_for(ids, 3), labels)
    assert out == pytest.approx({"accuracy": 4 / 7, "macro_f1": float(np.mean(per_class_f1))})


def test_pearson_spearman_by_hand():
    labels = np.array([0.0, 1.5, 2.0, 3.2, 4.8, 5.0])
    scores = np.array([0.3, 1.0, 2.5, 2.4, 4.0, 4.9])
    r = float(np.corrcoef(scores, labels)[0, 1])
    rho = float(np.corrcoef(np.argsort(np.argsort(scores)), np.argsort(np.argsort(labels)))[0, 1])
    for preds in (scores, scores.reshape(-1, 1), scores.astype(np.float32)):
        out = metrics.glue_metrics("stsb", preds, labels)
        assert out["pearson"] == pytest.approx(r, rel=1e-6)
        assert out["spearman"] == pytest.approx(rho)
        assert out["pearson_spearman"] == pytest.approx((r + rho) / 2, rel=1e-6)
    assert metrics.mse(scores, labels) == pytest.approx(float(np.mean((scores - labels) ** 2)))


def test_constant_predictions_give_zero_correlation_not_nan():
    labels = np.array([0.0, 1.0, 2.0])
    assert metrics.pearson(np.ones(3), labels) == 0.0
    assert metrics.spearman(np.ones(3), labels) == 0.0
    assert metrics.mcc(np.zeros(4, dtype=int), np.array([0, 1, 0, 1])) == 0.0


def test_tuple_of_outputs_uses_the_logits():
    assert metrics.accuracy((logits_for(IDS), np.zeros((10, 4))), LABELS) == pytest.approx(0.7)


def test_bad_inputs_are_rxf_errors():
    with pytest.raises(RxfError, match="5 predictions for 10 labels"):
        metrics.accuracy(IDS[:5], LABELS)
    with pytest.raises(RxfError, match="class ids"):
        metrics.accuracy(np.linspace(0, 1, 10), LABELS)
    with pytest.raises(RxfError, match="expected \\(N,\\) or \\(N, 1\\)"):
        metrics.pearson(np.zeros((10, 3)), LABELS)
    with pytest.raises(RxfError, match="did you mean 'accuracy'"):
        metrics.compute("acuracy", IDS, LABELS)
    with pytest.raises(RxfError, match="did you mean 'mrpc'"):
        metrics.glue_metrics("mrcp", IDS, LABELS)
