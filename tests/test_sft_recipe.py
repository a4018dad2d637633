"""rxf.sft (named _recipe: tests/commands/test_sft.py has the basename test_sft): packing, and short SFT runs on a tiny Llama (the chat data: tests/tasks/test_chat.py)."""

import json
import warnings

import pytest
import torch

from rxf.errors import RxfError
from rxf.tasks.chat import read_chat_jsonl, tokenize_chat
from tiny_chat import chat_tokenizer, conversations, save_tiny_chat_llama, write_chat_jsonl

pytest.importorskip("trl")
pytest.importorskip("peft")


def test_sft_on_text_records_with_a_base_model_tokenizer(tmp_path):
    from transformers import AutoTokenizer

    from rxf.sft import run_sft

    folder = save_tiny_chat_llama(tmp_path / "base")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    assert AutoTokenizer.from_pretrained(folder).chat_template is None
    words = ["red cat", "blue dog bird", "one two three", "sun moon star", "green bird", "red one"]
    train = tmp_path / "text.jsonl"
    train.write_text("".join(json.dumps({"text": w}) + "\n" for w in words * 4))
    result = run_sft(sft_config(tmp_path, model=str(folder), train_file=str(train), eval_file=None, max_steps=3, eval_steps=3,
                                method="r3f", method_options={"sigma": 1e-2}))
    assert result["global_step"] == 3 and result["final_eval_loss"] > 0


def test_packed_batch_gives_the_padded_batch_loss(tmp_path):
    """Packing is correct: each packed conversation attends to itself only, and no label crosses a boundary."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from rxf.methods.base import task_loss

    folder = save_tiny_chat_llama(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = chat_tokenizer()
    data = tokenize_chat(read_chat_jsonl(write_chat_jsonl(tmp_path / "c.jsonl", conversations(5))), tokenizer)
    examples = [dict(row) for row in data]
    padded = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)(examples)
    packed = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(examples)
    assert packed["input_ids"].size(0) == 1 and "attention_mask" not in packed

    def counted_logits(batch):
        """The logits at the positions whose next token counts, in conversation order."""
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
        with torch.no_grad():  # no KV cache: with one, transformers does not look for packed sequences
            logits = model(**inputs, use_cache=False).logits
        return logits[:, :-1][batch["labels"][:, 1:] != -100]

    expected = counted_logits(padded)
    assert torch.allclose(counted_logits(packed), expected, atol=1e-5)
    assert task_loss(
        model(**{k: packed[k] for k in ("input_ids", "position_ids")}, use_cache=False).logits, packed["labels"], "causal_lm"
    ).item() == pytest.approx(task_loss(model(**{k: padded[k] for k in ("input_ids", "attention_mask")}).logits, padded["labels"], "causal_lm").item(), rel=1e-5)
    # Without the packed positions, the conversations would see each other.
    crossed = counted_logits({"input_ids": packed["input_ids"], "labels": packed["labels"]})
    assert (crossed - expected).abs().max() > 1e-2


def sft_config(tmp_path, **overrides):
    from rxf.sft import SFTConfig

    folder = tmp_path / "model"
    if not folder.exists():
        save_tiny_chat_llama(folder)
    train = write_chat_jsonl(tmp_path / "train.jsonl", conversations(24, seed=1))
    evaluation = write_chat_jsonl(tmp_path / "eval.jsonl", conversations(6, seed=2))
    values = {
        "model": str(folder), "task": None, "train_file": str(train), "eval_file": str(evaluation), "max_steps": 4,
        "batch_size": 4, "eval_steps": 2, "logging_steps": 1, "learning_rate": 1e-2, "progress_bar": False,
        "output_dir": str(tmp_path / "run"), **overrides,
    }
    return SFTConfig.from_dict(values)


def test_lora_sft_trains_evaluates_and_saves_the_adapter_and_the_merged_model(tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rxf.sft import run_sft

    config = sft_config(tmp_path, lora_r=4, merge_adapter=True, method="r3f", method_options={"lambda_": 1.0, "sigma": 1e-2})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_sft(config)
    # rxf sets activation recomputation by the installed transformers' name for it: no deprecation warning about it.
    assert not [str(w.message) for w in caught if "checkpointing` is deprecated" in str(w.message)]
    out = tmp_path / "run"
    assert result["global_step"] == 4 and result["method"] == "r3f"
    assert [e["step"] for e in result["evaluations"]] == [2, 4]  # the step-4 evaluation is the final one, not run twice
    assert all(e["eval_loss"] > 0 for e in result["evaluations"])
    assert any("r3f_divergence" in entry for entry in result["loss_curve"])
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_eval_loss"] == result["final_eval_loss"]
    assert metrics["peak_rss_mib"] > 100  # the process's peak memory is recorded (Linux: VmHWM)

    # The adapter changed the model, and the merged model is the base model with the adapter.
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    ids = torch.tensor([[2, 5, 10, 11, 3]])
    with torch.no_grad():
        adapted = PeftModel.from_pretrained(base, out / "adapter").eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
        original = AutoModelForCausalLM.from_pretrained(tmp_path / "model")(ids).logits
    assert torch.allclose(adapted, merged, atol=1e-5)
    assert not torch.allclose(original, merged, atol=1e-3)


def test_only_the_main_process_writes_the_runs_files(tmp_path, monkeypatch):
    """Under several processes every rank runs run_sft: the config, tokenizer, merged model and metrics are rank 0's
    to write (several writing one file race); the adapter is saved by Trainer, which picks the rank itself."""
    from rxf.sft import run_sft
    from rxf.trl import RxfSFTTrainer

    monkeypatch.setattr(RxfSFTTrainer, "is_world_process_zero", lambda self: False)  # this process plays rank 1
    run_sft(sft_config(tmp_path, lora_r=4, merge_adapter=True, max_steps=2, eval_steps=2))
    out = tmp_path / "run"
    assert not (out / "config.yaml").exists() and not (out / "metrics.json").exists() and not (out / "merged").exists()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()  # Trainer's save: its own rank check, not ours


def test_length_grouped_batches_hold_conversations_of_similar_length(tmp_path, monkeypatch):
    import rxf.trl
    from rxf.sft import run_sft

    spreads: list[int] = []  # longest minus shortest conversation of each training batch
    original = rxf.trl.RxfSFTTrainer.compute_loss

    def recording(self, model, inputs, *args, **kwargs):
        if model.training:
            lengths = inputs["attention_mask"].sum(-1)
            spreads.append((lengths.max() - lengths.min()).item())
        return original(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(rxf.trl.RxfSFTTrainer, "compute_loss", recording)
    run_sft(sft_config(tmp_path, max_steps=6, eval_steps=6, group_by_length=True, output_dir=str(tmp_path / "grouped")))
    grouped = spreads[:]
    spreads.clear()
    run_sft(sft_config(tmp_path, max_steps=6, eval_steps=6, output_dir=str(tmp_path / "random")))
    assert len(grouped) == len(spreads) == 6
    assert sum(grouped) < sum(spreads)  # less padding


@pytest.mark.parametrize("method", ["standard", "neftune", "rdrop", "smart"])
def test_full_sft_with_packing_and_each_method(tmp_path, method):
    from rxf.sft import run_sft

    options = {"rdrop": {"dropout": 0.1}}.get(method, {})
    result = run_sft(sft_config(tmp_path, method=method, packing=True, max_steps=2, eval_steps=2, **options))
    assert result["global_step"] == 2 and result["packing"]
    assert result["final_eval_loss"] > 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def stop_after_saving(step: int):
    """A TrainerCallback that interrupts training right after the checkpoint of ``step`` is written."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    return Stop()


def checkpointing_recorder():
    """A TrainerCallback whose ``seen`` records whether the model trains with gradient checkpointing."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.seen: list[bool] = []

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            # transformers 5.2x renamed it (the old name warns)
            renamed = hasattr(model, "is_activation_checkpointing")
            self.seen.append(bool(model.is_activation_checkpointing if renamed else model.is_gradient_checkpointing))

    return Recorder()


@pytest.mark.parametrize("lora_r", [None, 4], ids=["full", "lora"])
def test_an_interrupted_run_resumes_from_its_checkpoint_to_the_same_result(tmp_path, lora_r):
    from rxf.sft import run_sft

    settings = {"max_steps": 4, "keep_checkpoints": 2, "method": "r3f", "method_options": {"sigma": 1e-2}, "lora_r": lora_r}
    whole_checkpointing = checkpointing_recorder()
    whole = run_sft(sft_config(tmp_path, **settings, output_dir=str(tmp_path / "whole")), extra_callbacks=[whole_checkpointing])
    assert whole["resumed_from"] is None
    # Interrupted right after the step-2 checkpoint, then the same command again.
    with pytest.raises(KeyboardInterrupt):
        run_sft(sft_config(tmp_path, **settings), extra_callbacks=[stop_after_saving(2)])
    run = tmp_path / "run"
    assert json.loads((run / "run.json").read_text())["status"] == "running" and not (run / "metrics.json").exists()
    # Resumed without gradient checkpointing: how activations are kept does not change what is computed.
    checkpointing = checkpointing_recorder()
    resumed = run_sft(sft_config(tmp_path, **settings, gradient_checkpointing=False), extra_callbacks=[checkpointing])
    assert checkpointing.seen == [False] and whole_checkpointing.seen == [True]
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 4
    assert resumed["timed_steps"] == 2 and whole["timed_steps"] == 4  # the step time counts this call's updates
    assert resumed["final_eval_loss"] == pytest.approx(whole["final_eval_loss"], rel=1e-5)
    # The mean training loss of the whole run, not of the 2 steps after the restart.
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-5)
    # ...and the run's wall time goes on from the clock at the restart (the step-2 log, before it).
    before_restart = next(e["wall_time_s"] for e in resumed["loss_curve"] if e["step"] == 2)
    assert resumed["train_wall_time_s"] >= resumed["loss_curve"][-1]["wall_time_s"] > before_restart > 0
    # The directory now holds this run, finished: the same command and another run are both refused.
    with pytest.raises(RxfError, match="holds this run, finished"):
        run_sft(sft_config(tmp_path, **settings))
    with pytest.raises(RxfError, match=r"holds another run \(max_steps: 4 there, 6 here\)"):
        run_sft(sft_config(tmp_path, **{**settings, "max_steps": 6}))
    # overwrite: the other run replaces it.
    again = run_sft(sft_config(tmp_path, **{**settings, "max_steps": 2, "overwrite": True}))
    assert again["global_step"] == 2 and again["resumed_from"] is None


def test_checkpoints_can_be_more_frequent_than_evaluations(tmp_path):
    from rxf.sft import run_sft

    result = run_sft(sft_config(tmp_path, max_steps=4, eval_steps=4, save_steps=1, keep_checkpoints=4, lora_r=4))
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("checkpoint-*"))
    assert saved == ["checkpoint-1", "checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert [e["step"] for e in result["evaluations"]] == [4]


def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_one(tmp_path, capsys):
    from rxf.sft import run_sft

    settings = {"max_steps": 4, "keep_checkpoints": 2, "lora_r": 4}
    with pytest.raises(KeyboardInterrupt):
        run_sft(sft_config(tmp_path, **settings), extra_callbacks=[stop_after_saving(4)])
    newest = tmp_path / "run" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    resumed = run_sft(sft_config(tmp_path, **settings))
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 4
    assert "checkpoint-4 is damaged (adapter_model.safetensors" in capsys.readouterr().err


def test_max_length_beyond_the_position_table_is_clamped(tmp_path, capsys):
    from rxf.sft import run_sft

    result = run_sft(sft_config(tmp_path, max_steps=1, eval_steps=1, max_length=100_000))
    assert result["global_step"] == 1
    assert "max_length 100000 is more than model" in capsys.readouterr().err


def test_conversations_truncated_past_their_answer_are_counted_in_a_warning(tmp_path, capsys):
    """A conversation whose assistant tokens all lie beyond max_length has nothing to learn: left out, and said."""
    from transformers import AutoTokenizer

    from rxf.sft import run_sft

    config = sft_config(tmp_path, max_steps=1, eval_steps=1)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    train = tokenize_chat(read_chat_jsonl(config.train_file), tokenizer)
    answers_at = sorted(labels.index(next(x for x in labels if x != -100)) for labels in train["labels"])
    cut = answers_at[len(answers_at) // 2]  # the later half loses its answer
    dropped = sum(position >= cut for position in answers_at)
    assert 0 < dropped < len(answers_at)
    run_sft(sft_config(tmp_path, max_steps=1, eval_steps=1, max_length=cut, output_dir=str(tmp_path / "cut")))
    assert f"{dropped} of {len(answers_at)} training conversations keep no assistant token to learn within max_length={cut}" in (
        capsys.readouterr().err
    )


def test_bad_settings_are_named(tmp_path):
    from rxf.sft import SFTConfig

    with pytest.raises(RxfError, match="R-Drop compares two dropout passes"):
        SFTConfig.from_dict({"method": "rdrop", "train_file": "x.jsonl"})
    with pytest.raises(RxfError, match="merge_adapter: true needs an adapter"):
        SFTConfig.from_dict({"merge_adapter": True})
    with pytest.raises(RxfError, match="R4F is not defined"):
        SFTConfig.from_dict({"method": "r4f"})
    with pytest.raises(RxfError, match=r"standard\+\+ is rxf train's recipe .Standard trained 2x as long., which rxf sft"):
        SFTConfig.from_dict({"method": "standard++", "train_file": "x.jsonl"})  # (it would silently be Standard)
    with pytest.raises(RxfError, match="lora_r"):
        SFTConfig.from_dict({"lora_r": 0})
