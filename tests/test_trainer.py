import json

import pytest
import torch
from datasets import Dataset
from transformers import BertForSequenceClassification, Seq2SeqTrainingArguments, TrainerCallback, TrainingArguments

from rxf import R3FConfig, R4FConfig, RxfSeq2SeqTrainer, RxfTrainer
from rxf.spectral import has_spectral_norm, largest_singular_value
from tiny_models import tiny_bart, tiny_bert


def rows(batch, n_copies=4):
    return Dataset.from_dict({k: v.tolist() * n_copies for k, v in batch.items()})


def arguments(tmp_path, kind=TrainingArguments, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=4, learning_rate=1e-3,
        logging_steps=2, report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True,
    )
    values.update(overrides)
    return kind(**values)


class LogCapture:
    def __init__(self):
        self.logs = []

    def __call__(self, trainer):
        original = trainer.log

        def log(logs, *args, **kwargs):
            result = original(logs, *args, **kwargs)  # the mixin adds its keys to logs
            self.logs.append(dict(logs))
            return result

        trainer.log = log


def test_trainer_logs_task_loss_and_divergence_separately(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method=R3FConfig(sigma=1e-1))
    capture = LogCapture()
    capture(trainer)
    trainer.train()
    training_logs = [log for log in capture.logs if "loss" in log]
    assert training_logs and all("task_loss" in log and "r3f_divergence" in log for log in training_logs)
    assert all(log["r3f_divergence"] > 0 for log in training_logs)


def test_trainer_accepts_a_method_name_and_evaluates_with_the_models_loss(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(
        model=model, args=arguments(tmp_path), train_dataset=rows(batch), eval_dataset=rows(batch, 1), method="r3f"
    )
    trainer.train()
    metrics = trainer.evaluate()
    with torch.no_grad():
        model.eval()
        expected = model(**{k: v for k, v in batch.items()}).loss.item()
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.usefixtures("without_dropout_check")
def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """With dropout off, 2×2 accumulated equals one batch of 4 (R3F with σ = 0, so the update is deterministic)."""
    results = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        model, batch = tiny_bert()
        args = arguments(
            tmp_path / f"b{batch_size}", per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
            max_steps=1, learning_rate=1e-2, seed=0, dataloader_drop_last=False,
        )
        trainer = RxfTrainer(model=model, args=args, train_dataset=rows(batch, 1), method=R3FConfig(sigma=0.0))
        trainer.train()
        results.append(model.classifier.weight.detach().clone())
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_r4f_trainer_saves_plain_transformers_weights(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method=R4FConfig(sigma=1e-2))
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    model.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected = model(**inputs).logits
    assert largest_singular_value(model.classifier.weight) <= 1 + 1e-3
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**inputs).logits, expected, atol=1e-5)
    assert largest_singular_value(reloaded.classifier.weight) <= 1 + 1e-3


def test_r4f_trainer_prepares_the_model_of_model_init(tmp_path):
    """model_init= (also hyperparameter_search's path): the model Trainer builds gets the normalised head."""
    _, batch = tiny_bert()
    trainer = RxfTrainer(model_init=lambda: tiny_bert()[0], args=arguments(tmp_path, max_steps=1), train_dataset=rows(batch), method="r4f")
    trainer.train()
    assert has_spectral_norm(trainer.model)


@pytest.mark.parametrize("trainer_class,kind", [(RxfTrainer, TrainingArguments), (RxfSeq2SeqTrainer, Seq2SeqTrainingArguments)])
@pytest.mark.parametrize("option", ["label_smoothing_factor", "compute_loss_func"])
def test_trainer_losses_that_the_method_would_replace_are_refused_before_anything_is_prepared(
    tmp_path, monkeypatch, trainer_class, kind, option
):
    import rxf.trainer
    from rxf import RxfError

    def built(*args, **kwargs):
        raise AssertionError("the method was being built before the refusal")

    monkeypatch.setattr(rxf.trainer, "build_method", built)
    model, batch = tiny_bart() if trainer_class is RxfSeq2SeqTrainer else tiny_bert()
    settings = {"label_smoothing_factor": 0.1} if option == "label_smoothing_factor" else {}
    loss = (lambda outputs, labels, num_items_in_batch=None: outputs.loss) if option == "compute_loss_func" else None
    fix = "set the method's label_smoothing" if option == "label_smoothing_factor" else "leave it unset"
    with pytest.raises(RxfError, match=f"{trainer_class.__name__} trains with the method's loss, which ignores {option}.*: {fix}"):
        trainer_class(model, arguments(tmp_path, kind, **settings), train_dataset=rows(batch), compute_loss_func=loss, method="r3f")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["r3f", "r4f", "smart", "freelb", "neftune"])
def test_torch_compile_is_refused_before_anything_with_a_method_that_hooks_the_embeddings(tmp_path, method):
    from rxf import RxfError

    model, batch = tiny_bert()
    with pytest.raises(RxfError, match=f"torch_compile=True\\) cannot be combined with method '{method}'.*leave torch_compile off"):
        RxfTrainer(model, arguments(tmp_path, torch_compile=True), train_dataset=rows(batch), method=method)
    assert not (tmp_path / "out").exists()


def test_torch_compile_is_left_to_the_trainer_with_a_method_without_hooks(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(model, arguments(tmp_path, torch_compile=True), train_dataset=rows(batch), method="standard")
    assert trainer.args.torch_compile


def test_seq2seq_trainer_runs_r3f(tmp_path):
    model, batch = tiny_bart()
    trainer = RxfSeq2SeqTrainer(
        model=model,
        args=arguments(tmp_path, Seq2SeqTrainingArguments),
        train_dataset=rows(batch),
        method=R3FConfig(sigma=1e-2, label_smoothing=0.1),
    )
    capture = LogCapture()
    capture(trainer)
    trainer.train()
    assert any("r3f_divergence" in log for log in capture.logs)


class NanAtCall:
    """Wraps a method so that its loss terms become NaN on chosen calls (1-based)."""

    def __init__(self, method, calls, term="regularizer"):
        self.method, self.calls, self.term, self.count = method, set(calls), term, 0

    def __getattr__(self, name):
        return getattr(self.method, name)

    def compute_loss(self, model, batch, **kwargs):
        self.count += 1
        out = self.method.compute_loss(model, batch, **kwargs)
        if self.count in self.calls:
            nan = torch.tensor(float("nan"))
            if self.term == "regularizer":
                out.regularizer = nan
            else:
                out.task_loss = nan
            out.loss = out.loss * nan
        return out


def test_nonfinite_divergence_stops_with_the_step_and_saves_state(tmp_path):
    from rxf import RxfError
    from rxf.checkpoints import latest_checkpoint

    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path, max_steps=6), train_dataset=rows(batch), method="r3f")
    trainer.rxf_method = NanAtCall(trainer.rxf_method, calls={3})
    with pytest.raises(RxfError, match=r"r3f_divergence is not finite at step 3.*saved in"):
        trainer.train()
    saved = latest_checkpoint(tmp_path / "out")
    assert saved is not None and saved.endswith("checkpoint-2")


def test_nonfinite_task_loss_can_skip_the_step(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(
        model=model, args=arguments(tmp_path, max_steps=3), train_dataset=rows(batch), method="r3f", on_nonfinite="skip"
    )
    trainer.rxf_method = NanAtCall(trainer.rxf_method, calls={2}, term="task")
    before = {}

    class Snapshot(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            before[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    trainer.add_callback(Snapshot())
    trainer.train()
    assert trainer.rxf_skipped_steps == 1
    after_step_2 = {n: p.detach() for n, p in model.named_parameters()}
    # Step 2 (global_step 1 → 2) changed nothing; steps 1 and 3 did.
    assert all(torch.equal(before[1][n], before[2][n]) for n in before[1])
    assert any(not torch.equal(before[0][n], before[1][n]) for n in before[0])
    assert any(not torch.equal(before[2][n], after_step_2[n]) for n in before[2])
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_resumed_run_reports_the_whole_runs_train_loss_and_skipped_steps(tmp_path, caplog):
    """Trainer alone averages the loss over the steps after the restart and counts skips from zero."""
    import shutil

    from rxf.trainer import RUN_TOTALS_FILE

    def trainer(nan_calls=()):
        model, batch = tiny_bert()
        args = arguments(
            tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=2, seed=0,
            save_strategy="steps", save_steps=2,
        )
        built = RxfTrainer(model=model, args=args, train_dataset=rows(batch), method="r3f", on_nonfinite="skip")
        built.rxf_method = NanAtCall(built.rxf_method, calls=nan_calls, term="task")  # call 2: step 1's 2nd micro-batch
        return built

    whole = trainer(nan_calls={2})
    whole_output = whole.train()
    assert whole.rxf_skipped_steps == 1
    checkpoints = tmp_path / "out"
    assert (checkpoints / "checkpoint-2" / RUN_TOTALS_FILE).is_file()

    shutil.rmtree(checkpoints / "checkpoint-4")
    resumed = trainer()
    output = resumed.train(resume_from_checkpoint=True)  # the newest checkpoint: checkpoint-2
    assert output.training_loss == pytest.approx(whole_output.training_loss, rel=1e-5)
    assert resumed.state.log_history[-1]["train_loss"] == output.training_loss
    assert resumed.rxf_skipped_steps == 1  # the skip before the checkpoint still counts

    # Without readable totals (a checkpoint of an older rxf, a damaged file) the resume goes on,
    # with a warning, and the mean covers the steps after the restart only.
    shutil.rmtree(checkpoints / "checkpoint-4")
    (checkpoints / "checkpoint-2" / RUN_TOTALS_FILE).write_text("{")
    with caplog.at_level("WARNING", logger="rxf.trainer"):
        partial = trainer().train(resume_from_checkpoint=str(checkpoints / "checkpoint-2"))
    assert f"{RUN_TOTALS_FILE} is unreadable" in caplog.text
    assert partial.training_loss != pytest.approx(whole_output.training_loss, rel=1e-3)
    # Its checkpoint-4 says the sum starts at step 2, so a later restart (here from the last step,
    # which trains no further step) divides by the 2 steps the sum covers, not by all 4.
    again = trainer().train(resume_from_checkpoint=str(checkpoints / "checkpoint-4"))
    assert again.training_loss == pytest.approx(partial.training_loss, rel=1e-6)
    assert json.loads((checkpoints / "checkpoint-4" / RUN_TOTALS_FILE).read_text())["first_step"] == 2


def test_bf16_warns_that_noise_is_lost_and_keeps_the_divergence_fp32(tmp_path):
    from rxf import NoisePrecisionWarning

    model, batch = tiny_bert()
    seen = []
    trainer = RxfTrainer(
        model=model, args=arguments(tmp_path, bf16=True, max_steps=2), train_dataset=rows(batch), method=R3FConfig(sigma=1e-5)
    )
    original = trainer.rxf_method.compute_loss

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append(out.regularizer.dtype)
        return out

    trainer.rxf_method.compute_loss = spy
    with pytest.warns(NoisePrecisionWarning, match="bfloat16"):
        trainer.train()
    assert seen and all(dtype == torch.float32 for dtype in seen)


def test_r4f_trainer_on_a_model_without_head_is_a_clear_error(tmp_path):
    from rxf import RxfError
    from tiny_models import tiny_gpt2

    model, batch = tiny_gpt2()
    with pytest.raises(RxfError, match="R4F"):
        RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method="r4f")


def test_a_trainer_without_a_method_says_it_trains_standard(tmp_path):
    """RxfTrainer without method= is plain Trainer: a warning, since rxf train and rxf.functional default to R3F."""
    import warnings

    model, batch = tiny_bert()
    with pytest.warns(UserWarning, match="got no method=, so it trains Standard") as caught:
        trainer = RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch))
    [warning] = [w for w in caught if "got no method=" in str(w.message)]
    assert trainer.rxf_method.config.name == "standard" and warning.filename == __file__  # points at the caller
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method="standard")


@pytest.mark.parametrize("where", ["arguments", "accelerator"])
@pytest.mark.parametrize("enabled", ["sp_enabled", "cp_enabled"])
def test_sequence_and_context_parallelism_are_refused(tmp_path, monkeypatch, enabled, where):
    """Each rank would hold part of every sequence, and the method's loss is computed per rank: refused, not mis-trained.
    Given in the arguments, before the Trainer builds anything; set in accelerate's config, once it has built its accelerator."""
    from types import SimpleNamespace

    from accelerate import Accelerator
    from transformers import Trainer

    from rxf import RxfError

    split = SimpleNamespace(**{"sp_enabled": False, "cp_enabled": False, enabled: True}, sp_backend="torch", cp_backend="torch")
    args = arguments(tmp_path)
    if where == "arguments":
        args.parallelism_config = split
    else:
        create = Trainer.create_accelerator_and_postprocess

        def create_then_split(self):  # the accelerator is built as usual, then reports the split
            create(self)
            monkeypatch.setattr(Accelerator, "parallelism_config", property(lambda accelerator: split))

        monkeypatch.setattr(Trainer, "create_accelerator_and_postprocess", create_then_split)
    model, batch = tiny_bert()
    kind = "sequence" if enabled == "sp_enabled" else "context"
    with pytest.raises(RxfError, match=f"RxfTrainer cannot train with {kind} parallelism"):
        RxfTrainer(model=model, args=args, train_dataset=rows(batch), method="r3f")
    if where == "arguments":
        assert not (tmp_path / "out").exists()  # refused before the Trainer made anything


def test_standard_plus_plus_in_a_trainer_says_its_budget_is_the_arguments(tmp_path):
    model, batch = tiny_bert()
    with pytest.warns(UserWarning, match="trains standard.. as Standard: its longer training is rxf train's recipe"):
        RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), method="standard++")


def test_unknown_nonfinite_policy_is_rejected(tmp_path):
    from rxf import RxfError

    model, batch = tiny_bert()
    with pytest.raises(RxfError, match="on_nonfinite"):
        RxfTrainer(model=model, args=arguments(tmp_path), train_dataset=rows(batch), on_nonfinite="ignore")


class NanGradientAtCall(NanAtCall):
    """The loss stays finite on the chosen calls, but its gradient is NaN (the classic torch.where trap)."""

    def compute_loss(self, model, batch, **kwargs):
        self.count += 1
        out = self.method.compute_loss(model, batch, **kwargs)
        if self.count in self.calls:
            weight = next(model.parameters())
            trap = torch.where(torch.tensor(True), torch.zeros(()), torch.sqrt(-weight.abs().sum() - 1))
            out.loss = out.loss + trap  # forward: + 0; backward: NaN into every gradient
        return out


def test_nonfinite_gradients_with_a_finite_loss_stop_with_a_finite_rescue_checkpoint(tmp_path):
    from rxf import RxfError
    from rxf.trainer import weights_are_finite

    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path, max_steps=4), train_dataset=rows(batch), method="r3f")
    trainer.rxf_method = NanGradientAtCall(trainer.rxf_method, calls={2})
    with pytest.raises(RxfError, match=r"the gradients are not finite at step 2; stopped, with the state before this step saved in .*checkpoint-1"):
        trainer.train()
    assert weights_are_finite(str(tmp_path / "out" / "checkpoint-1"))


def test_nonfinite_gradients_are_skipped_like_a_nonfinite_loss(tmp_path):
    model, batch = tiny_bert()
    trainer = RxfTrainer(
        model=model, args=arguments(tmp_path, max_steps=3), train_dataset=rows(batch), method="r3f", on_nonfinite="skip"
    )
    trainer.rxf_method = NanGradientAtCall(trainer.rxf_method, calls={2})
    trainer.train()
    assert trainer.rxf_skipped_steps == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_the_guard_names_the_settings_of_the_part_that_failed(tmp_path):
    """Before any update a finite task loss with a non-finite regulariser points at the method's settings."""
    from rxf import RxfError

    model, batch = tiny_bert()
    trainer = RxfTrainer(model=model, args=arguments(tmp_path, max_steps=2), train_dataset=rows(batch), method=R3FConfig(sigma=0.5))
    trainer.rxf_method = NanAtCall(trainer.rxf_method, calls={1})
    with pytest.raises(RxfError, match=r"cause is a setting of the method: change method_options of r3f \(lambda_=1, sigma=0.5\)"):
        trainer.train()
