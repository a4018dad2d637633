"""Fixtures shared by the verb tests."""

from __future__ import annotations

import pytest

from inference_runs import classifier_run, multi_label_run, regression_run


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory):
    """Three short `rxf train` runs (classifier, multi-label, regression) that predict and evaluate share."""
    root = tmp_path_factory.mktemp("trained-runs")
    return {"reviews": classifier_run(root), "tickets": multi_label_run(root), "scores": regression_run(root), "root": root}
