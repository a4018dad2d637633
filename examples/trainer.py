"""R3F with Hugging Face Trainer: swap Trainer for RxfTrainer and name the method.

    python examples/trainer.py                       # packaged MiniLM, BBC news, 1 epoch of R3F
    python examples/trainer.py --method r4f --lambda 0.5 --max-steps 20
    accelerate launch examples/trainer.py            # the same on several processes

Everything else is the usual Trainer code. Without ``method=`` RxfTrainer trains Standard (it is then
plain Trainer), so name the method; λ from the paper's grid {0.1, 0.5, 1, 5} (``rxf methods``).
"""

import argparse

import numpy as np
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, TrainingArguments

from rxf import R3FConfig, R4FConfig, RxfTrainer
from rxf.models import resolve_model
from rxf.tasks import load_task

parser = argparse.ArgumentParser()
parser.add_argument("--method", default="r3f", choices=["r3f", "r4f"])
parser.add_argument("--lambda", dest="lambda_", type=float, default=1.0)
parser.add_argument("--max-steps", type=int, default=-1)
parser.add_argument("--max-train-samples", type=int, default=None)
parser.add_argument("--output-dir", default="runs/example-trainer")
args = parser.parse_args()

task = load_task("bbc_news", max_train_samples=args.max_train_samples, max_eval_samples=200)
path = resolve_model("all-MiniLM-L6-v2")  # the packaged model; a hub name works where there is a network
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=task.num_labels)


def encode(split):
    return split.map(
        lambda rows: {**tokenizer(rows["text"], truncation=True, max_length=128), "labels": rows["label"]},
        batched=True, remove_columns=split.column_names,
    )


def accuracy(prediction):
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


config = (R3FConfig if args.method == "r3f" else R4FConfig)(lambda_=args.lambda_, sigma=1e-5)
trainer = RxfTrainer(
    model=model,
    args=TrainingArguments(
        output_dir=args.output_dir, per_device_train_batch_size=16, learning_rate=1e-4, num_train_epochs=1,
        max_steps=args.max_steps, eval_strategy="epoch", logging_steps=10, save_strategy="no", report_to=[],
    ),
    train_dataset=encode(task.train), eval_dataset=encode(task.eval["validation"]),
    data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
    method=config,  # rxf: the one new argument
)
trainer.train()  # logs loss, task_loss and r3f_divergence
print(trainer.evaluate())
trainer.save_model(f"{args.output_dir}/model")  # R4F: spectral norm folded in, loads with plain transformers
