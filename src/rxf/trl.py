"""The methods inside TRL's ``SFTTrainer`` (needs the ``llm`` extra: ``pip install 'rxf[llm]'``).

>>> from rxf.trl import RxfSFTTrainer
>>> trainer = RxfSFTTrainer(model=model, args=SFTConfig(...), train_dataset=data, method=R3FConfig(lambda_=0.1))

Everything SFTTrainer does still happens — datasets of plain text, chat ``messages`` or
``prompt``/``completion`` pairs, ``completion_only_loss``, packing and padding-free batches,
``peft_config`` — and the training loss is the method's (:class:`rxf.trainer.RxfTrainerMixin`):

* SFTTrainer's own training metrics (``entropy``, ``mean_token_accuracy``, ``num_tokens``) are
  kept, computed as TRL computes them (over the positions whose next-token label counts) from
  the method's *clean* pass — for FreeLB, which has none, from its first ascent pass;
* evaluation is SFTTrainer's own (its loss and metrics);
* ``neftune_noise_alpha`` together with a method that perturbs the embeddings (R3F, R4F,
  SMART, FreeLB, NEFTune) is refused: transformers' NEFTune hook would noise the clean pass
  too. For NEFTune, use ``method="neftune"`` (per-sequence lengths, no noise on padding)
  instead of the argument; with ``standard`` or ``rdrop`` the argument works as in TRL (with
  ``rdrop`` each of the two passes draws its own NEFTune noise, so their divergence is noise's
  and dropout's together).
* SFTTrainer's other training losses are refused rather than silently replaced by the method's
  token cross-entropy: ``loss_type="dft"``, ``label_smoothing_factor`` (set the method's
  ``label_smoothing``), ``compute_loss_func``, and a Mixture-of-Experts router loss (set
  ``router_aux_loss_coef=0.0`` to train without it).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from trl import SFTTrainer

from rxf.methods.base import LossOutput, prediction_labels, prediction_logits
from rxf.trainer import RxfTrainerMixin, other_loss_error


METRICS_CHUNK_ELEMENTS = 1 << 22


def token_metrics(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(entropy sum, correct next-token predictions, counted positions) over labels ≠ −100 after the shift."""
    logits = prediction_logits(logits, "causal_lm")
    labels = prediction_labels(labels.to(logits.device), "causal_lm")
    counted = labels != -100
    rows = logits.reshape(-1, logits.size(-1))
    index = counted.reshape(-1).nonzero().squeeze(-1)
    targets = labels.reshape(-1)[index]
    entropy = torch.zeros((), dtype=torch.float32, device=logits.device)
    correct = torch.zeros((), dtype=torch.long, device=logits.device)
    # In chunks of positions, so that the fp32 temporaries stay ~16 MiB whatever the vocabulary and batch.
    chunk = max(1, METRICS_CHUNK_ELEMENTS // logits.size(-1))
    with torch.no_grad():
        for start in range(0, index.numel(), chunk):
            selected = rows.index_select(0, index[start : start + chunk]).float()
            log_p = torch.log_softmax(selected, dim=-1)
            entropy -= (log_p.exp() * log_p).sum()
            correct += (selected.argmax(-1) == targets[start : start + chunk]).sum()
    return entropy, correct, counted.sum()


class RxfSFTTrainer(RxfTrainerMixin, SFTTrainer):
    """``trl.SFTTrainer`` training with an rxf method (``method=`` a name or config)."""

    def __init__(self, *args: Any, method: Any = None, on_nonfinite: str = "stop", **kwargs: Any):
        super().__init__(*args, method=method, on_nonfinite=on_nonfinite, **kwargs)
        # Known once the model is loaded (it may be a name).
        if getattr(self, "aux_loss_enabled", False):
            raise other_loss_error(
                self, "the router loss of a Mixture-of-Experts model", "set router_aux_loss_coef=0.0 to train without it"
            )

    def _rxf_other_losses(self, given: dict[str, Any]) -> list[tuple[bool, str, str]]:
        loss_type = getattr(given.get("args"), "loss_type", "nll")  # args None: SFTConfig's default (older TRL: no option)
        dft = (loss_type != "nll", f"loss_type={loss_type!r}", "leave loss_type at 'nll' (token cross-entropy)")
        return [dft, *super()._rxf_other_losses(given)]

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs or not model.training:
            return SFTTrainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
        inputs["use_cache"] = False  # as SFTTrainer: no KV cache while training
        self._rxf_sft_inputs = inputs
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        if self.rxf_method.multi_backward:  # compute_loss is not called: keep the batch for the metrics here
            self._rxf_sft_inputs = inputs
        return super().training_step(model, inputs, num_items_in_batch)

    def _rxf_record(self, out: LossOutput, normalizer: Any = None) -> None:
        super()._rxf_record(out, normalizer)
        inputs = getattr(self, "_rxf_sft_inputs", None)
        if inputs is None or out.logits is None:
            return
        self._rxf_sft_inputs = None
        entropy, correct, counted = token_metrics(out.logits, inputs["labels"])
        gather = self.accelerator.gather_for_metrics
        counted, entropy, correct = gather(counted).sum(), gather(entropy).sum(), gather(correct).sum()
        metrics = self._metrics["train"]
        metrics["entropy"].append((entropy / counted).item() if counted > 0 else 0.0)
        metrics["mean_token_accuracy"].append((correct / counted).item() if counted > 0 else 0.0)
        # Tokens seen, as SFTTrainer counts them: the attention mask, or the packed length without one.
        if "attention_mask" in inputs:
            tokens = inputs["attention_mask"].sum()
        else:
            tokens = torch.tensor(inputs["position_ids"].size(1), device=out.logits.device)
        self._total_train_tokens += gather(tokens.to(out.logits.device)).sum().item()
        metrics["num_tokens"] = [self._total_train_tokens]
