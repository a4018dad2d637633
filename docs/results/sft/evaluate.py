"""ROUGE of the summaries that finished `rxf sft` runs generate for held-out SAMSum dialogues, and a table over runs.

    python docs/results/sft/evaluate.py docs/results/sft/runs/* --data-dir ../shared/data/summarization \
        --max-eval-samples 200 --out docs/results/sft/results.md

For each run directory (an `rxf sft` output): the base model of its config with the run's
adapter merged in (or its full `model/`), greedy-free beam search as `rxf summarize` does it
(rxf.summarization.generate_summaries: 4 beams, at most 64 new tokens, no repeated trigram),
on the run's own held-out dialogues (the same fixed subset of the SAMSum test split that its
evaluation loss was measured on), ROUGE-1/2/L/Lsum F1 × 100 (rxf.summarization.rouge_scores).
Writes `rouge.json` and `predictions.jsonl` into each run directory, and the table to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load_trained(run: Path, config: dict):
    from rxf.models import load_generation_model

    if (run / "model").is_dir():
        return load_generation_model(str(run / "model"))
    from peft import PeftModel

    model, tokenizer = load_generation_model(config["model"])
    return PeftModel.from_pretrained(model, run / "adapter").merge_and_unload(), tokenizer


def score_run(run: Path, data_dir: str, max_eval_samples: int | None) -> dict:
    from rxf.summarization import SummarizationConfig, generate_summaries, rouge_scores
    from rxf.tasks.base import subsample
    from rxf.tasks.chat import load_chat_task

    metrics = json.loads((run / "metrics.json").read_text())
    config = metrics["config"]
    task = load_chat_task("samsum", data_dir=data_dir)
    held_out = subsample(task.eval, max_eval_samples or config["max_eval_samples"], 0)
    model, tokenizer = load_trained(run, config)
    model.config.use_cache = True
    prompts = [tokenizer.apply_chat_template(m["messages"][:-1], tokenize=True, add_generation_prompt=True) for m in held_out]
    prompts = [p["input_ids"] if hasattr(p, "keys") else p for p in prompts]
    generation = SummarizationConfig(num_beams=4, max_new_tokens=64, no_repeat_ngram_size=3, eval_batch_size=8)
    predictions = generate_summaries(model, tokenizer, prompts, generation)
    references = [m["messages"][-1]["content"] for m in held_out]
    scores = rouge_scores(predictions, references)
    with open(run / "predictions.jsonl", "w") as out:
        for record, prediction in zip(held_out, predictions):
            out.write(json.dumps({"dialogue": record["messages"][0]["content"], "reference": record["messages"][-1]["content"],
                                  "prediction": prediction}) + "\n")
    result = {
        "method": metrics["method"], "seed": metrics["seed"], "eval_loss": metrics["final_eval_loss"],
        "seconds_per_step": metrics["seconds_per_step"], "dialogues": len(held_out), **scores,
    }
    (run / "rouge.json").write_text(json.dumps(result, indent=2))
    return result


def table(results: list[dict]) -> str:
    lines = ["| method | seed | ROUGE-1 | ROUGE-2 | ROUGE-L | held-out loss | s/step |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(results, key=lambda r: (r["method"], r["seed"])):
        lines.append(f"| {r['method']} | {r['seed']} | {r['rouge1']:.2f} | {r['rouge2']:.2f} | {r['rougeL']:.2f} | "
                     f"{r['eval_loss']:.4f} | {r['seconds_per_step']:.1f} |")
    lines += ["", "| method | runs | ROUGE-1 mean | ROUGE-2 mean | ROUGE-L mean | held-out loss mean | s/step mean |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for method in sorted({r["method"] for r in results}):
        rows = [r for r in results if r["method"] == method]
        mean = lambda key: statistics.mean(r[key] for r in rows)  # noqa: E731
        lines.append(f"| {method} | {len(rows)} | {mean('rouge1'):.2f} | {mean('rouge2'):.2f} | {mean('rougeL'):.2f} | "
                     f"{mean('eval_loss'):.4f} | {mean('seconds_per_step'):.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--max-eval-samples", type=int, default=None, help="default: the run's own max_eval_samples")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results = [score_run(run, args.data_dir, args.max_eval_samples) for run in args.runs if (run / "metrics.json").is_file()]
    text = table(results)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
