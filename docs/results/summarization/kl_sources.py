"""Where R3F's KL comes from on SmolLM2: the σ = 1e-5 embedding noise, or dropout?

In the paper's formulation (gradient_mode "both") the clean and the noised pass are two training
passes, so with dropout on they also differ by their dropout masks. This measures the KL of the
gigaword-cpu recipe on one batch of 8 training pairs, pass by pass, with dropout on and off:

    python docs/results/summarization/kl_sources.py > docs/results/summarization/kl_sources.json
"""

from __future__ import annotations

import json

import torch
from transformers import DataCollatorForSeq2Seq

from rxf.methods import method_config
from rxf.models import load_generation_model
from rxf.summarization import SummarizationConfig, tokenize_for_training
from rxf.tasks.summarization import load_summarization_task


def main() -> None:
    config = SummarizationConfig.from_yaml("configs/summarization/gigaword-cpu.yaml")
    task = load_summarization_task(config.task, data_dir=config.data_dir, max_train_samples=config.max_train_samples)
    model, tokenizer = load_generation_model(config.model, dropout=config.dropout)
    features = list(tokenize_for_training(task.train.select(range(8)), tokenizer, config, decoder_only=True))
    batch = DataCollatorForSeq2Seq(tokenizer)(features)
    rows = []
    for dropout_on in (True, False):
        model.train(dropout_on)
        for sigma in (0.0, 1e-5, 1e-3):
            torch.manual_seed(0)
            method = method_config("r3f", lambda_=0.1, sigma=sigma, label_smoothing=0.1).build()
            with torch.no_grad():
                out = method.compute_loss(model, batch)
            rows.append({"dropout": config.dropout if dropout_on else 0.0, "sigma": sigma, "kl": out.regularizer.item()})
    print(json.dumps({"model": config.model, "batch": 8, "target_tokens": int((batch["labels"] != -100).sum()), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
