"""rxf.probing: linear probes, CKA, effective rank, features and their cache, on synthetic data and a tiny BERT."""

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from probing_helpers import write_tiny_bert, write_tiny_glue
from rxf.errors import RxfError
from rxf.probing import (
    FeatureConfig,
    FeatureExtractor,
    ProbeConfig,
    ProbeExperimentConfig,
    effective_rank,
    encode,
    fit_probe,
    linear_cka,
    load_encoder,
    similarity_tracker,
)
from rxf.probing.features import pool

# ---- linear probes --------------------------------------------------------------------------


def _accuracy(fit, labels):
    return float((fit.predictions.argmax(axis=1) == labels).mean())


def test_probe_on_random_features_scores_at_chance():
    rng = np.random.default_rng(0)
    x_train, x_eval = rng.normal(size=(600, 32)), rng.normal(size=(2000, 32))
    y_train, y_eval = rng.integers(0, 2, 600), rng.integers(0, 2, 2000)
    fit = fit_probe(x_train, y_train, x_eval, regression=False, config=ProbeConfig())
    assert abs(_accuracy(fit, y_eval) - 0.5) < 0.05  # 2000 eval examples: std of chance accuracy ≈ 0.011


def test_probe_on_features_that_contain_the_label_scores_near_one():
    rng = np.random.default_rng(1)
    y_train, y_eval = rng.integers(0, 3, 300), rng.integers(0, 3, 300)

    def features(labels):
        x = rng.normal(size=(len(labels), 32))
        x[:, 5] += 4.0 * labels  # one noisy direction carries the class
        return x

    fit = fit_probe(features(y_train), y_train, features(y_eval), regression=False, config=ProbeConfig())
    assert _accuracy(fit, y_eval) > 0.95
    assert fit.predictions.shape == (300, 3) and fit.regularization["C"] in ProbeConfig().c_grid


def test_regression_probe_uses_ridge_and_recovers_a_linear_score():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 16))
    y = x @ rng.normal(size=16) + 0.1 * rng.normal(size=400)
    fit = fit_probe(x[:300], y[:300], x[300:], regression=True, config=ProbeConfig())
    assert np.corrcoef(fit.predictions, y[300:])[0, 1] > 0.99
    assert fit.regularization["alpha"] in ProbeConfig().alpha_grid


def test_probe_rejects_a_single_class_and_bad_settings():
    with pytest.raises(RxfError, match="single class"):
        fit_probe(np.ones((10, 2)), np.zeros(10), np.ones((3, 2)), regression=False, config=ProbeConfig())
    with pytest.raises(RxfError, match="c_grid"):
        ProbeConfig(c_grid=[])
    with pytest.raises(RxfError, match="cv_folds"):
        ProbeConfig(cv_folds=1)


# ---- CKA and effective rank -----------------------------------------------------------------


def test_cka_of_a_representation_with_itself_and_a_rotation_of_itself_is_one():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(500, 24)) @ rng.normal(size=(24, 24))  # correlated features
    rotation = ortho_group.rvs(24, random_state=4)
    for debiased in (False, True):
        assert linear_cka(x, x, debiased=debiased) == pytest.approx(1.0, abs=1e-9)
        assert linear_cka(x, x @ rotation, debiased=debiased) == pytest.approx(1.0, abs=1e-9)
        assert linear_cka(x, 3.0 * x + 7.0, debiased=debiased) == pytest.approx(1.0, abs=1e-9)  # scale, shift


def test_cka_with_independent_noise_is_near_zero():
    rng = np.random.default_rng(5)
    x, noise = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    assert linear_cka(x, noise) < 0.03  # plain CKA: bias ~ dimensions / samples
    assert abs(linear_cka(x, noise, debiased=True)) < 0.01
    # At n ≈ dimensions plain CKA is biased far above 0; the debiased estimator is not.
    small_x, small_noise = rng.normal(size=(64, 48)), rng.normal(size=(64, 48))
    assert linear_cka(small_x, small_noise) > 0.3
    assert abs(linear_cka(small_x, small_noise, debiased=True)) < 0.1


def test_cka_is_between_for_partly_shared_representations():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1000, 8))
    y = np.hstack([x[:, :4], rng.normal(size=(1000, 4))])  # half the directions shared
    assert 0.3 < linear_cka(x, y, debiased=True) < 0.7


def test_effective_rank_counts_equally_used_directions():
    rng = np.random.default_rng(7)
    basis = ortho_group.rvs(10, random_state=8)[:3]  # three orthonormal directions in R^10
    centred = rng.normal(size=(300, 3))
    centred -= centred.mean(axis=0)
    coefficients = np.linalg.qr(centred)[0]  # orthonormal zero-mean columns: equal singular values
    assert effective_rank(coefficients @ basis) == pytest.approx(3.0, rel=1e-6)
    assert effective_rank(np.outer(rng.normal(size=300), rng.normal(size=10))) == pytest.approx(1.0, abs=1e-6)
    spread = effective_rank(rng.normal(size=(2000, 10)))
    assert 9.0 < spread <= 10.0


def test_cka_rejects_mismatched_rows():
    with pytest.raises(RxfError, match="same examples"):
        linear_cka(np.ones((5, 2)), np.ones((6, 2)))


# ---- features -------------------------------------------------------------------------------


def test_mean_pooling_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 1.0]]


def test_features_are_deterministic_frozen_and_batch_independent(tmp_path):
    encoder, tokenizer = load_encoder(write_tiny_bert(tmp_path / "bert"))
    encoder.train()  # dropout on: encode must switch it off and restore the mode
    texts = ["good movie", "the plot is very dull and awful", "it was fine"]
    one = encode(encoder, tokenizer, texts, None, FeatureConfig(pooling="mean", batch_size=1))
    three = encode(encoder, tokenizer, texts, None, FeatureConfig(pooling="mean", batch_size=3))
    assert one.shape == (3, 16) and one.dtype == np.float32
    np.testing.assert_allclose(one, three, atol=1e-5)  # padding does not leak into mean pooling
    assert encoder.training
    first_layer = encode(encoder, tokenizer, texts, None, FeatureConfig(layer=1))
    assert not np.allclose(first_layer, encode(encoder, tokenizer, texts, None, FeatureConfig()))
    with pytest.raises(RxfError, match="layer=7 is out of range"):
        encode(encoder, tokenizer, texts, None, FeatureConfig(layer=7))


def test_feature_cache_hits_on_the_same_inputs_and_misses_on_changes(tmp_path):
    checkpoint = write_tiny_bert(tmp_path / "bert")
    extractor = FeatureExtractor(FeatureConfig(), tmp_path / "cache")
    texts, pairs = ["good movie", "bad plot"], ["it was fine", "very dull"]
    first = extractor(checkpoint, texts, pairs, "demo:train")
    again = extractor(checkpoint, texts, pairs, "demo:train")
    np.testing.assert_array_equal(first, again)
    assert (extractor.hits, extractor.misses) == (1, 1)
    extractor(checkpoint, texts, None, "demo:train")  # different inputs
    FeatureExtractor(FeatureConfig(pooling="mean"), tmp_path / "cache")(checkpoint, texts, pairs, "demo:train")
    assert extractor.misses == 2 and len(list((tmp_path / "cache").glob("*.npy"))) == 3


def test_a_damaged_feature_cache_file_is_computed_again(tmp_path):
    """A cache entry cut short (a full disk, a killed write) is a miss, recomputed and rewritten."""
    checkpoint = write_tiny_bert(tmp_path / "bert")
    texts = ["good movie", "bad plot"]
    first = FeatureExtractor(FeatureConfig(), tmp_path / "cache")(checkpoint, texts, None, "demo:train")
    (cached,) = (tmp_path / "cache").glob("*.npy")
    cached.write_bytes(cached.read_bytes()[:40])
    extractor = FeatureExtractor(FeatureConfig(), tmp_path / "cache")
    again = extractor(checkpoint, texts, None, "demo:train")
    np.testing.assert_allclose(again, first, rtol=1e-6)
    assert (extractor.hits, extractor.misses) == (0, 1)
    np.testing.assert_array_equal(np.load(cached), again)  # the entry is sound again


def test_feature_config_rejects_unknown_pooling():
    with pytest.raises(RxfError, match="pooling"):
        FeatureConfig(pooling="max")


def test_similarity_tracker_logs_cka_and_rank_at_each_evaluation(tmp_path):
    from transformers import AutoModelForSequenceClassification, TrainerControl, TrainerState, TrainingArguments

    checkpoint = write_tiny_bert(tmp_path / "bert")
    encoder, tokenizer = load_encoder(checkpoint)
    texts = ["good movie", "bad plot", "it was fine", "very dull film", "a nice film"]
    reference = encode(encoder, tokenizer, texts, None, FeatureConfig())
    tracker = similarity_tracker(tokenizer, texts, None, reference, FeatureConfig())
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    state = TrainerState(global_step=3, epoch=1.0)
    tracker.on_evaluate(TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none"), state, TrainerControl(), model=model)
    record = tracker.history[0]
    assert record["step"] == 3 and record["cka"] == pytest.approx(1.0, abs=1e-6)  # same encoder weights
    with torch.no_grad():
        embeddings = model.bert.embeddings.word_embeddings.weight
        embeddings.copy_(embeddings[torch.randperm(len(embeddings), generator=torch.Generator().manual_seed(0))])
    tracker.on_evaluate(TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none"), state, TrainerControl(), model=model)
    assert tracker.history[1]["cka"] < 0.999


# ---- the experiment config ------------------------------------------------------------------


def test_experiment_config_names_bad_keys_and_values(tmp_path):
    with pytest.raises(RxfError, match="'sead'"):
        ProbeExperimentConfig.from_dict({"sead": 1})
    with pytest.raises(RxfError, match="features.*'pool'.*pooling"):
        ProbeExperimentConfig.from_dict({"features": {"pool": "mean"}})
    with pytest.raises(RxfError, match="methods: 'r3ff' must be one of .*did you mean 'r3f'"):
        ProbeExperimentConfig.from_dict({"methods": ["r3ff"]})
    with pytest.raises(RxfError, match="train.seed is set by each stage"):
        ProbeExperimentConfig.from_dict({"train": {"seed": 3}})
    with pytest.raises(RxfError, match="learning_rat"):
        ProbeExperimentConfig.from_dict({"train": {"learning_rat": 3}})
    with pytest.raises(RxfError, match="stage_checkpoint"):
        ProbeExperimentConfig.from_dict({"stage_checkpoint": "last"})
    with pytest.raises(RxfError, match="method_options has options for 'smart'"):
        ProbeExperimentConfig.from_dict({"method_options": {"smart": {}}})
    config = ProbeExperimentConfig.from_dict({"probe": {"c_grid": [1.0]}, "method_options": {"r3f": {"lambda_": 0.5}}})
    assert config.probe.c_grid == [1.0] and config.stage_config("glue/rte", "r3f", 1, tmp_path).method_options == {"lambda_": 0.5}


def test_probe_session_scores_a_task_on_frozen_features(tmp_path):
    from rxf.probing import ProbeSession

    glue = write_tiny_glue(tmp_path / "glue", train=60, dev=30)
    config = ProbeExperimentConfig(model=write_tiny_bert(tmp_path / "bert"), data_dir=str(glue), output_dir=str(tmp_path / "out"))
    session = ProbeSession(config)
    session.similarity_task = "glue/sst2"
    record = session.probe(config.model, "glue/sst2")
    assert record["metric"] == "accuracy" and 0.0 <= record["value"] <= 1.0
    assert record["probe_train_examples"] == 60 and record["probe_eval_examples"] == 30
    regression = session.probe(config.model, "glue/stsb")
    assert regression["metric"] == "pearson_spearman" and "alpha" in regression["probe_regularization"]
    same = session.similarity(config.model)
    assert same["cka"] == pytest.approx(1.0) and same["effective_rank"] >= 1.0


def test_best_encoder_keeper_keeps_the_weights_of_the_best_evaluation(tmp_path):
    from transformers import AutoModelForSequenceClassification, TrainerControl, TrainerState, TrainingArguments

    from rxf.probing.experiments import best_encoder_keeper

    model = AutoModelForSequenceClassification.from_pretrained(write_tiny_bert(tmp_path / "bert"), num_labels=2)
    keeper = best_encoder_keeper("eval_accuracy")
    args, control = TrainingArguments(output_dir=str(tmp_path / "t"), report_to="none"), TrainerControl()
    weight = model.bert.pooler.dense.weight
    for step, accuracy in [(1, 0.6), (2, 0.8), (3, 0.7)]:
        with torch.no_grad():
            weight.fill_(float(step))
        keeper.on_evaluate(args, TrainerState(global_step=step), control, model=model, metrics={"eval_accuracy": accuracy})
    assert keeper.step == 2 and keeper.best == 0.8
    assert torch.all(keeper.state["pooler.dense.weight"] == 2.0)  # a copy, not the live tensor
    assert "classifier.weight" not in keeper.state  # the encoder only: the next stage gets a new head
