"""ROUGE of the summaries that finished `rxf sft` runs generate for held-out SAMSum dialogues, and a table over runs.

    python docs/results/sft/evaluate.py docs/results/sft/runs/* --data-dir ../shared/data/summarization \
        --out docs/results/sft/results.md
    python docs/results/sft/evaluate.py docs/results/sft/runs/* --table-only --out docs/results/sft/results.md

For each finished run directory (an `rxf sft` output with `metrics.json`) that has no `rouge.json`
yet (all of them with --rescore): the base model of its config with the run's adapter merged in
(or its full `model/`) summarises the run's own held-out dialogues (the same fixed subset of the
SAMSum test split that its evaluation loss was measured on) with greedy decoding, at most 64 new
tokens and no repeated trigram (rxf.summarization.generate_summaries); scored with ROUGE-1/2/L/Lsum
F1 × 100 (rxf.summarization.rouge_scores). Greedy, not 4-beam search: it is how a chat model is
used, and it costs a quarter of the CPU time; every run is decoded the same way. Writes
`rouge.json` and `predictions.jsonl` into the run directory, and the table of all scored runs to
--out. Each run is scored once, so the script can be called after every run (run.sh does).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rxf.sft import DEFAULT_MODEL


def load_trained(run: Path, config: dict):
    from rxf.models import load_generation_model

    if (run / "model").is_dir():
        return load_generation_model(str(run / "model"))
    from peft import PeftModel

    model, tokenizer = load_generation_model(config["model"])
    return PeftModel.from_pretrained(model, run / "adapter").merge_and_unload(), tokenizer


DECODING = {"num_beams": 1, "max_new_tokens": 64, "no_repeat_ngram_size": 3}


def held_out_dialogues(data_dir: str, count: int):
    """The fixed subset of the SAMSum test split that `rxf sft --max-eval-samples count` evaluates on."""
    from rxf.tasks.base import subsample
    from rxf.tasks.chat import load_chat_task

    return subsample(load_chat_task("samsum", data_dir=data_dir).eval, count, 0)


def summarize_and_score(model, tokenizer, held_out, directory: Path, row: dict) -> dict:
    """Greedy summaries of ``held_out`` by ``model``, their ROUGE, written to ``directory`` (rouge.json, predictions.jsonl)."""
    from rxf.summarization import SummarizationConfig, generate_summaries, rouge_scores

    model.config.use_cache = True
    prompts = [tokenizer.apply_chat_template(m["messages"][:-1], tokenize=True, add_generation_prompt=True) for m in held_out]
    prompts = [p["input_ids"] if hasattr(p, "keys") else p for p in prompts]
    started = time.perf_counter()
    predictions = generate_summaries(model, tokenizer, prompts, SummarizationConfig(**DECODING, eval_batch_size=8))
    generation_seconds = time.perf_counter() - started
    references = [m["messages"][-1]["content"] for m in held_out]
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "predictions.jsonl", "w") as out:
        for record, prediction in zip(held_out, predictions):
            out.write(json.dumps({"dialogue": record["messages"][0]["content"], "reference": record["messages"][-1]["content"],
                                  "prediction": prediction}) + "\n")
    result = {**row, "dialogues": len(held_out), **rouge_scores(predictions, references),
              "decoding": DECODING, "generation_seconds": generation_seconds}
    (directory / "rouge.json").write_text(json.dumps(result, indent=2))
    return result


def score_run(run: Path, data_dir: str, max_eval_samples: int | None) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    config = metrics["config"]
    held_out = held_out_dialogues(data_dir, max_eval_samples or config["max_eval_samples"])
    model, tokenizer = load_trained(run, config)
    row = {"method": metrics["method"], "seed": metrics["seed"], "eval_loss": metrics["final_eval_loss"],
           "seconds_per_step": metrics["seconds_per_step"]}
    return summarize_and_score(model, tokenizer, held_out, run, row)


def score_base(directory: Path, model_name: str, data_dir: str, max_eval_samples: int) -> dict:
    """The model before fine-tuning, on the same dialogues: does SFT change the summaries at all?"""
    from rxf.models import load_generation_model

    model, tokenizer = load_generation_model(model_name)
    row = {"method": "none (base model)", "seed": None, "eval_loss": None, "seconds_per_step": None}
    return summarize_and_score(model, tokenizer, held_out_dialogues(data_dir, max_eval_samples), directory, row)


def regularizer_share(run: Path) -> float | None:
    """How much of the training objective the regulariser was: mean over the logged steps of (loss − task loss) / loss.

    None for methods that log no divergence (Standard; NEFTune, whose noise adds no term to the loss).
    """
    if not (run / "metrics.json").is_file():
        return None
    curve = [e for e in json.loads((run / "metrics.json").read_text())["loss_curve"]
             if any(key.endswith("_divergence") for key in e) and e["loss"]]
    return statistics.mean((e["loss"] - e["task_loss"]) / e["loss"] for e in curve) if curve else None


# The order the README discusses them in: the baseline, the noise users already have, then rxf's methods.
METHOD_ORDER = ["standard", "neftune", "r3f", "rdrop"]


def method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def table(results: list[dict]) -> str:
    lines = ["| method | seed | ROUGE-1 | ROUGE-2 | ROUGE-L | held-out loss | s/step | regulariser share of the loss |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    number = lambda value, digits: "—" if value is None else f"{value:.{digits}f}"  # noqa: E731
    share = lambda value: "—" if value is None else f"{value:.1e}"  # noqa: E731
    for r in sorted(results, key=lambda r: (r["seed"] is not None, method_rank(r["method"]), r["seed"] or 0)):  # the base model first
        lines.append(f"| {r['method']} | {r['seed'] or '—'} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | "
                     f"{number(r['eval_loss'], 4)} | {number(r['seconds_per_step'], 1)} | {share(r.get('regularizer_share'))} |")
    lines += ["", "| method | runs | ROUGE-1 mean | ROUGE-2 mean | ROUGE-L mean | held-out loss mean | s/step mean |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for method in sorted({r["method"] for r in results if r["seed"] is not None}, key=method_rank):
        rows = [r for r in results if r["method"] == method]
        mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
        lines.append(f"| {method} | {len(rows)} | {mean('rouge1'):.2f} | {mean('rouge2'):.2f} | {mean('rougeL'):.2f} | "
                     f"{mean('eval_loss'):.4f} | {mean('seconds_per_step'):.1f} |")
    return "\n".join(lines) + "\n"


def against_standard(results: list[dict], runs: list[Path]) -> str:
    """Each fine-tuned run against Standard: how many held-out summaries are word for word Standard's,
    at the same seed (same LoRA initialisation and batch order: what the method alone changes) and at
    the other seeds (what the seed changes), and the ROUGE-1 difference to Standard at the same seed."""
    predictions = {}
    for run, result in zip(runs, results):
        with open(run / "predictions.jsonl") as lines:
            predictions[(result["method"], result["seed"])] = [json.loads(line)["prediction"] for line in lines]
    rouge1 = {(r["method"], r["seed"]): r["rouge1"] for r in results}
    standard_seeds = sorted(seed for method, seed in predictions if method == "standard")
    lines = ["| run | summaries identical to Standard's, same seed | identical to Standard's, other seed | "
             "ROUGE-1 − Standard's, same seed |", "|---|---:|---:|---:|"]
    for method, seed in sorted((key for key in predictions if key[1] is not None), key=lambda k: (method_rank(k[0]), k[1])):
        mine = predictions[(method, seed)]
        same = lambda other: f"{sum(a == b for a, b in zip(mine, predictions[('standard', other)]))} / {len(mine)}"  # noqa: E731
        others = ", ".join(f"{same(other)} (seed {other})" for other in standard_seeds if other != seed) or "—"
        paired = method != "standard" and seed in standard_seeds
        difference = f"{rouge1[(method, seed)] - rouge1[('standard', seed)]:+.2f}" if paired else "—"
        lines.append(f"| {method}, seed {seed} | {same(seed) if paired else '—'} | {others} | {difference} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--max-eval-samples", type=int, default=None, help="default: the run's own max_eval_samples")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rescore", action="store_true", help="score runs that have a rouge.json again")
    parser.add_argument("--base", type=Path, default=None,
                        help="also score the model before fine-tuning, into this directory (once; with --rescore again)")
    parser.add_argument("--base-model", default=DEFAULT_MODEL, help="the model the runs fine-tuned (rxf sft's default)")
    parser.add_argument("--table-only", action="store_true", help="score nothing; the table of the runs already scored")
    args = parser.parse_args()
    if not args.table_only and args.data_dir is None:
        parser.error("--data-dir is needed to score runs")
    for run in args.runs:
        finished = (run / "metrics.json").is_file()
        if finished and not args.table_only and (args.rescore or not (run / "rouge.json").is_file()):
            score_run(run, args.data_dir, args.max_eval_samples)
    if args.base and not args.table_only and (args.rescore or not (args.base / "rouge.json").is_file()):
        score_base(args.base, args.base_model, args.data_dir, args.max_eval_samples or 200)
    runs = args.runs + ([args.base] if args.base else [])
    scored = [run for run in runs if (run / "rouge.json").is_file()]
    results = [{**json.loads((run / "rouge.json").read_text()), "regularizer_share": regularizer_share(run)} for run in scored]
    text = table(results) + "\n" + against_standard(results, scored)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
