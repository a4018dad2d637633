"""R3F in a hand-written training loop, with accelerate (the functional API).

    python examples/functional_loop.py                       # packaged MiniLM, BBC news, 1 epoch
    python examples/functional_loop.py --method r4f --max-steps 20
    accelerate launch examples/functional_loop.py            # the same loop on several processes

The loop is plain PyTorch; rxf contributes two lines: the method prepares the model (R4F
normalises the head), then gives the loss of each batch.
"""

import argparse

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from rxf import functional as rf  # (not F: that name is usually torch.nn.functional)
from rxf.tasks import load_task
from rxf.models import resolve_model

parser = argparse.ArgumentParser()
parser.add_argument("--method", default="r3f")
parser.add_argument("--lambda", dest="lambda_", type=float, default=1.0)
parser.add_argument("--max-steps", type=int, default=None)
parser.add_argument("--max-train-samples", type=int, default=None)
args = parser.parse_args()

accelerator = Accelerator()
task = load_task("bbc_news", max_train_samples=args.max_train_samples, max_eval_samples=200)
path = resolve_model("all-MiniLM-L6-v2")
tokenizer = AutoTokenizer.from_pretrained(path)
model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=task.num_labels)


def encode(split):
    return split.map(
        lambda rows: {**tokenizer(rows["text"], truncation=True, max_length=128), "labels": rows["label"]},
        batched=True, remove_columns=split.column_names,
    )


collate = DataCollatorWithPadding(tokenizer)
train = DataLoader(encode(task.train), batch_size=16, shuffle=True, collate_fn=collate)
dev = DataLoader(encode(task.eval["validation"]), batch_size=64, collate_fn=collate)

method = rf.method(args.method, lambda_=args.lambda_)      # rxf: the method and its options
model = method.prepare_model(model)                        # rxf: R4F adds spectral norm here
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
model, optimizer, train, dev = accelerator.prepare(model, optimizer, train, dev)

model.train()
for step, batch in enumerate(train):
    out = method.training_step(model, batch, backward=accelerator.backward)   # rxf: loss + backward
    optimizer.step()
    optimizer.zero_grad()
    if step % 10 == 0:
        regularizer = float(out.regularizer) if out.regularizer is not None else 0.0
        accelerator.print(f"step {step}: task loss {float(out.task_loss):.4f}, divergence {regularizer:.2e}")
    if args.max_steps and step + 1 >= args.max_steps:
        break

model.eval()
correct = total = 0
with torch.no_grad():
    for batch in dev:
        labels = batch.pop("labels")
        predictions = model(**batch).logits.argmax(-1)
        predictions, labels = accelerator.gather_for_metrics((predictions, labels))
        correct += (predictions == labels).sum().item()
        total += labels.numel()
accelerator.print(f"dev accuracy {correct / total:.4f} on {total} examples")
