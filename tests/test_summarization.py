"""The summarization recipe: R3F's KL over real target tokens only, prompts, generation, ROUGE, end to end."""

import json

import datasets
import pytest
import torch
from rouge_score import rouge_scorer
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq

import rxf.methods.r3f as r3f_module
import rxf.noise
from rxf.divergence import symmetric_kl
from rxf.errors import RxfError
from rxf.methods import method_config
from rxf.summarization import (
    SENTENCE_SPLITTER,
    PromptEncoder,
    SummarizationConfig,
    _no_repeat_ngram_in_summary,
    generate_summaries,
    results_table,
    run_metrics_files,
    rouge_scores,
    run_summarization,
    source_ids,
    split_sentences,
    tokenize_for_training,
)
from tiny_summarization import save_tiny_bart, save_tiny_bert, save_tiny_llama, toy_pairs, write_csv


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-summarizers")
    return {"bart": save_tiny_bart(root / "bart"), "llama": save_tiny_llama(root / "llama")}


def toy_dataset(n: int, seed: int = 0) -> datasets.Dataset:
    documents, summaries = zip(*toy_pairs(n, seed))
    return datasets.Dataset.from_dict({"document": list(documents), "summary": list(summaries)})


def load(kind: str, folder):
    auto = AutoModelForCausalLM if kind == "llama" else AutoModelForSeq2SeqLM
    model = auto.from_pretrained(folder)
    model.eval()  # dropout off: the two passes differ by the noise alone
    return model, AutoTokenizer.from_pretrained(folder)


# ---- R3F's KL counts real target tokens only ------------------------------------------------


def positional_noise(shape, sigma, noise_type="normal", *, device=None, generator=None):
    """Noise that depends only on (position, dimension): the same at a token whatever the padding after it."""
    rows, length, width = shape
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    dimension = torch.arange(width, dtype=torch.float32, device=device)[None, :]
    return (torch.sin(1.7 * position + 0.3 * dimension) * sigma).expand(rows, length, width).clone()


def divergence_inputs(monkeypatch, model, batch):
    """Run R3F on ``batch``; return its regulariser and the (clean, noised, mask) handed to the divergence."""
    captured = []
    real = r3f_module.divergence_for

    def capture(name, task_type):
        function = real(name, task_type)

        def wrapped(p, q, mask, **kwargs):
            captured.append((p.detach(), q.detach(), mask))
            return function(p, q, mask, **kwargs)

        return wrapped

    monkeypatch.setattr(r3f_module, "divergence_for", capture)
    monkeypatch.setattr(rxf.noise, "sample_noise", positional_noise)
    out = method_config("r3f", sigma=0.5, lambda_=1.0, label_smoothing=0.1).build().compute_loss(model, batch)
    return out.regularizer, captured[0]


@pytest.mark.parametrize("kind", ["bart", "llama"])
def test_kl_ignores_padding_and_prompt_positions(kind, tiny_dirs, monkeypatch):
    """The same examples padded to two widths give the same KL; a KL that counted padding would not."""
    model, tokenizer = load(kind, tiny_dirs[kind])
    config = SummarizationConfig(model=str(tiny_dirs[kind]), task=None)
    features = list(tokenize_for_training(toy_dataset(3), tokenizer, config, decoder_only=kind == "llama"))
    collator_model = None if kind == "llama" else model
    tight = DataCollatorForSeq2Seq(tokenizer, model=collator_model)(features)
    wide = DataCollatorForSeq2Seq(tokenizer, model=collator_model, pad_to_multiple_of=48)(features)
    assert wide["input_ids"].shape[1] > tight["input_ids"].shape[1] and wide["labels"].shape[1] > tight["labels"].shape[1]

    kl_tight, (clean_t, noised_t, mask_t) = divergence_inputs(monkeypatch, model, tight)
    monkeypatch.undo()
    kl_wide, (clean_w, noised_w, mask_w) = divergence_inputs(monkeypatch, model, wide)

    assert kl_tight.item() > 1e-6
    assert kl_wide.item() == pytest.approx(kl_tight.item(), rel=1e-4)
    # The mask is exactly the real target tokens: labels != -100 (after the shift of a causal LM).
    shift = 1 if kind == "llama" else 0
    assert torch.equal(mask_w, wide["labels"][:, shift:] != -100)
    # The test can tell: over all positions, padding and prompt included, the two widths disagree.
    unmasked_tight, unmasked_wide = symmetric_kl(clean_t, noised_t), symmetric_kl(clean_w, noised_w)
    assert unmasked_wide.item() != pytest.approx(unmasked_tight.item(), rel=1e-2)
    if kind == "llama":
        attended = tight["attention_mask"][:, 1:].bool()
        with_prompt = symmetric_kl(clean_t, noised_t, attended)
        assert with_prompt.item() != pytest.approx(kl_tight.item(), rel=1e-2)


# ---- prompts and labels of decoder-only models -------------------------------------------------


def test_decoder_only_labels_mask_prompt_and_document(tiny_dirs):
    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["llama"])
    config = SummarizationConfig(model="x", task=None, prompt="summary : {document} Summary :", max_source_length=4)
    encoder = PromptEncoder(tokenizer, config)
    example = encoder.example("the police says new talks in the city .", "police new talks")
    prompt = encoder.prompt("the police says new talks in the city .")
    n = len(prompt)
    assert example["input_ids"][:n] == prompt and example["labels"][:n] == [-100] * n
    assert example["labels"][n:] == example["input_ids"][n:]
    assert example["input_ids"][-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example["input_ids"][n:-1]) == "police new talks"
    # The document is cut to 4 tokens inside the prompt; the instruction around it survives.
    assert tokenizer.decode(prompt) == "summary : the police says new Summary :"


def test_no_repeat_ngram_blocks_repeats_in_the_summary_but_not_copies_from_the_document():
    processor = _no_repeat_ngram_in_summary(2, prompt_length=3)
    scores = torch.zeros(1, 10)
    copied = processor(torch.tensor([[4, 5, 6, 4]]), scores.clone())  # prompt 4 5 6, summary so far: 4
    assert torch.isfinite(copied).all()  # "4 5" occurs in the document only: 5 may follow
    repeated = processor(torch.tensor([[1, 2, 3, 4, 5, 4]]), scores.clone())  # summary so far: 4 5 4
    assert repeated[0, 5] == -float("inf") and torch.isfinite(repeated[0, :5]).all()


def test_left_padded_generation_matches_one_at_a_time(tiny_dirs):
    """A decoder-only model summarises a short document the same alone and beside a long one."""
    model, tokenizer = load("llama", tiny_dirs["llama"])
    config = SummarizationConfig(model="x", task=None, num_beams=1, max_new_tokens=5, no_repeat_ngram_size=0, eval_batch_size=4)
    documents = ["the storm . ", "police says new talks in the city after the big storm wins record deal ."]
    sources = source_ids(documents, tokenizer, config, decoder_only=True)
    together = generate_summaries(model, tokenizer, sources, config)
    alone = [generate_summaries(model, tokenizer, [s], config)[0] for s in sources]
    assert together == alone and all(together)


# ---- ROUGE -----------------------------------------------------------------------------------


PAIRS = [
    ("police say the storm closed the market .", "storm closes market , police say"),
    ("The minister opens new talks. Rain is expected!", "Minister opens talks. Rain expected."),
    ("", "a summary nobody wrote"),
    ("records fall as the team wins", "team wins , records fall"),
]


def test_rouge_agrees_with_rouge_score_on_the_same_strings():
    predictions, references = [p for p, _ in PAIRS], [r for _, r in PAIRS]
    ours = rouge_scores(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    direct = [scorer.score(r, p) for p, r in PAIRS]
    for key in ("rouge1", "rouge2", "rougeL"):
        assert ours[key] == pytest.approx(100 * sum(s[key].fmeasure for s in direct) / len(PAIRS))
    lines = [scorer.score("\n".join(split_sentences(r)), "\n".join(split_sentences(p)))["rougeLsum"].fmeasure for p, r in PAIRS]
    assert ours["rougeLsum"] == pytest.approx(100 * sum(lines) / len(PAIRS))
    assert 0 < ours["rouge2"] < ours["rouge1"] < 100


def test_sentences_split_one_per_line():
    assert SENTENCE_SPLITTER in ("nltk", "regex")
    assert split_sentences("The minister opens new talks. Rain is expected! Why?") == [
        "The minister opens new talks.", "Rain is expected!", "Why?"
    ]
    assert split_sentences("  ") == []


# ---- the config --------------------------------------------------------------------------------


def test_label_smoothing_defaults_to_the_papers_and_can_be_changed():
    assert SummarizationConfig(method="standard").resolved_method_config().label_smoothing == 0.1
    config = SummarizationConfig(method="r3f", method_options={"label_smoothing": 0.0, "lambda_": 0.01})
    assert config.resolved_method_config().label_smoothing == 0.0 and config.resolved_method_config().lambda_ == 0.01


@pytest.mark.parametrize(
    "values,words",
    [
        ({"method": "r4f"}, ["R4F", "r3f"]),
        ({"method": "standard++"}, ["standard++", "rxf summarize does not apply", "epochs (or max_steps) multiplied"]),
        ({"prompt": "Summarize this"}, ["prompt", "{document}"]),
        ({"num_beams": 0}, ["num_beams"]),
        ({"min_new_tokens": 9, "max_new_tokens": 4}, ["min_new_tokens"]),
        ({"lr_scheduler": "polynomal"}, ["polynomial"]),
        ({"max_steps": -1, "epochs": 0}, ["nothing to train"]),
        ({"dropout": 1.5}, ["dropout"]),
        ({"num_beam": 4}, ["num_beam", "num_beams"]),
        ({"method_options": {"lamda_": 1}}, ["lamda_", "lambda_"]),
    ],
)
def test_bad_settings_name_the_field(values, words):
    with pytest.raises(RxfError) as error:
        SummarizationConfig.from_dict(values)
    assert all(word in str(error.value) for word in words), str(error.value)


def test_results_table_gives_mean_and_spread_over_seeds(tmp_path):
    for method, seed, rouge1 in [("standard", 1, 30.0), ("standard", 2, 32.0), ("r3f", 1, 31.0)]:
        final = {"step": 10, "rouge1": rouge1, "rouge2": 10.0, "rougeL": 28.0, "rougeLsum": 28.0, "summary_words": 8.0}
        run = {"method": method, "seed": seed, "final": final, "train_runtime_s": 5.0, "config": {"max_steps": 10},
               "method_config": {"lambda_": 0.1, "sigma": 1e-5, "noise_type": "normal"}}
        (tmp_path / f"{method}-{seed}").mkdir()
        (tmp_path / f"{method}-{seed}" / "metrics.json").write_text(json.dumps(run))
    table = results_table(run_metrics_files(sorted(tmp_path.iterdir())))
    assert "| standard | 2 | 31.00 ± 1.41 |" in table
    assert "| r3f (λ=0.1, σ=1e-05, normal) | 1 | 31.00 ± 0.00 |" in table


# ---- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["bart", "llama", "bert2bert"])
def test_recipe_runs_end_to_end(kind, tiny_dirs, tmp_path):
    folder = save_tiny_bert(tmp_path / "bert") if kind == "bert2bert" else tiny_dirs[kind]
    train = write_csv(tmp_path / "train.csv", toy_pairs(24))
    config = SummarizationConfig(
        model=str(folder), warm_start=kind == "bert2bert", task=None, train_file=str(train),
        max_steps=4, eval_steps=2, batch_size=8, eval_batch_size=8, num_beams=2, max_new_tokens=5,
        learning_rate=1e-3, logging_steps=1, method_options={"lambda_": 0.1, "sigma": 1e-3},
        output_dir=str(tmp_path / "run"), progress_bar=False, max_target_length=32,
    )
    result = run_summarization(config)
    assert result["decoder_only"] == (kind == "llama")
    assert result["model_class"] == {"bart": "BartForConditionalGeneration", "llama": "LlamaForCausalLM",
                                     "bert2bert": "EncoderDecoderModel"}[kind]
    assert [h["step"] for h in result["history"]] == [2, 4]
    assert all(0 <= result["final"][k] <= 100 for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"))
    assert result["method_config"]["label_smoothing"] == 0.1
    assert result["loss_curve"] and all(entry["r3f_divergence"] > 0 for entry in result["loss_curve"])
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["final"] == result["final"] and saved["num_eval_examples"] == len(
        (tmp_path / "run" / "predictions-validation.jsonl").read_text().splitlines()
    )
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_the_output_directory_belongs_to_one_run(tiny_dirs, tmp_path):
    train = write_csv(tmp_path / "train.csv", toy_pairs(16))
    values = dict(
        model=str(tiny_dirs["bart"]), task=None, train_file=str(train), max_steps=1, batch_size=8, num_beams=1,
        max_new_tokens=3, output_dir=str(tmp_path / "run"), progress_bar=False, save_model=False,
    )
    first = run_summarization(SummarizationConfig(**values))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
    with pytest.raises(RxfError, match="holds this run, finished"):
        run_summarization(SummarizationConfig(**values))
    with pytest.raises(RxfError, match=r"holds another run \(seed: 42 there, 7 here\)"):
        run_summarization(SummarizationConfig(**values, seed=7))
    again = run_summarization(SummarizationConfig(**values, overwrite=True))
    assert again["final"]["rougeL"] == first["final"]["rougeL"] and again["seed"] == first["seed"]


def test_a_folder_where_a_result_file_goes_is_named_as_the_output_dirs(tmp_path):
    from rxf.summarization import _check_result_paths

    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(RxfError) as raised:
        _check_result_paths(tmp_path, "validation", SummarizationConfig(model="x", task=None))
    assert str(raised.value) == (f"output_dir's metrics.json {tmp_path}/metrics.json is a folder, not a file: "
                                 "choose another output_dir, or move that folder away")


def test_lengths_are_fitted_to_the_position_table(tiny_dirs, tmp_path, capsys):
    from rxf.models import load_generation_model
    from rxf.summarization import fit_lengths
    from tiny_summarization import WORDS

    model, tokenizer = load_generation_model(str(tiny_dirs["llama"]))  # 128 positions
    config = SummarizationConfig(model="tiny", max_source_length=512, max_target_length=32, max_new_tokens=8)
    fitted = fit_lengths(config, model, tokenizer, decoder_only=True)
    prompt = len(PromptEncoder(tokenizer, config).prompt(""))
    assert fitted.max_source_length == 128 - prompt - 33
    assert "max_source_length 512 does not fit model 'tiny'" in capsys.readouterr().err
    # A document of max_source_length tokens, the prompt and the summary fill the table exactly.
    example = PromptEncoder(tokenizer, fitted).example(f"{WORDS[0]} " * 600, f"{WORDS[1]} " * 100)
    assert len(example["input_ids"]) == 128
    with pytest.raises(RxfError, match="max_target_length 200 / max_new_tokens 8 leave no room"):
        fit_lengths(SummarizationConfig(model="tiny", max_target_length=200, max_new_tokens=8), model, tokenizer, True)
    bart, _ = load_generation_model(str(tiny_dirs["bart"]))  # 64 positions
    capsys.readouterr()
    assert fit_lengths(config, bart, tokenizer, decoder_only=False).max_source_length == 64
    # The warning names summarize's own setting (summarize has no max_length).
    warning = capsys.readouterr().err
    assert "max_source_length 512 is more than model 'tiny' can take (64 positions): using max_source_length 64" in warning
    assert " max_length" not in warning
