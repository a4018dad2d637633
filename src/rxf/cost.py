"""What training costs: the forward and backward passes a step really runs (counted with hooks on
the model), and the peak memory a run needed (:func:`peak_memory`, recorded in every run's metrics).

>>> with count_passes(model) as counts:
...     out = method.training_step(model, batch, backward=lambda loss: loss.backward())
>>> counts.forward_calls, counts.forward_units, counts.backward_sweeps, counts.backward_units

What is counted, and how:

* **forward_calls**: calls of the counted module (the model itself by default, or ``module=``,
  e.g. an encoder that an external loop calls directly), by a forward hook;
  ``forward_calls_with_grad``: those that recorded an autograd graph (their output requires grad).
* **forward_units**: rows processed, over all calls, divided by the batch size ``batch_size=``
  (default: the first call's rows — pass it, since a method's first call may be a doubled
  batch). R3F runs its clean and noised pass as *one* call over the batch stacked
  on itself: 1 call, 2 units. Units are the better measure of work; calls say how many times
  the model was entered.
* **backward_sweeps**: backward executions (``loss.backward()``, ``torch.autograd.grad``) in
  which a gradient reached the module's output — by a tensor hook on each output that records
  a graph, de-duplicated within one execution with an autograd-engine callback. A sweep that
  only asks for the gradient of an input perturbation (SMART's inner ``autograd.grad``) counts:
  it runs back through every layer, although it skips the weight gradients (about half the
  work of a full backward).
* **backward_units**: rows of outputs that received a gradient, over all sweeps, divided by the
  batch size: one sweep through R3F's doubled batch is 2 units; through two separate forward
  graphs (the reference-style loop) it is also 2 units, in 1 sweep.

Not counted: work outside the module (losses, optimizer), sweeps that never reach its outputs,
and the cost difference between a full backward and an activations-only one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sys

import torch
from torch import nn


@dataclass
class PassCounts:
    """Counted passes (see the module docstring for what each number means)."""

    batch_size: int | None = None
    forward_calls: int = 0
    forward_calls_with_grad: int = 0
    forward_rows: int = 0
    backward_sweeps: int = 0
    backward_rows: int = 0
    _sweep: int = field(default=0, repr=False)
    _in_sweep: bool = field(default=False, repr=False)

    @property
    def forward_units(self) -> float:
        return self.forward_rows / self.batch_size if self.batch_size else 0.0

    @property
    def backward_units(self) -> float:
        return self.backward_rows / self.batch_size if self.batch_size else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "forward_calls": self.forward_calls,
            "forward_calls_with_grad": self.forward_calls_with_grad,
            "forward_units": self.forward_units,
            "backward_sweeps": self.backward_sweeps,
            "backward_units": self.backward_units,
        }


def _output_tensors(output: Any) -> list[torch.Tensor]:
    """Floating-point tensors with a batch dimension in a module's output (tensor, tuple, dict, ModelOutput)."""
    if torch.is_tensor(output):
        return [output] if output.is_floating_point() and output.dim() > 0 else []
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _output_tensors(item)]
    return []


@contextmanager
def count_passes(model: nn.Module, *, module: nn.Module | None = None, batch_size: int | None = None) -> Iterator[PassCounts]:
    """Count forward calls/units and backward sweeps/units of ``module`` (default: ``model``) while active."""
    target = module if module is not None else model
    counts = PassCounts(batch_size=batch_size)
    active = True

    def end_sweep() -> None:
        counts._in_sweep = False

    def on_forward(_module: nn.Module, _args: Any, output: Any) -> None:
        tensors = _output_tensors(output)
        if not tensors:
            return
        rows = tensors[0].size(0)
        counts.forward_calls += 1
        counts.forward_rows += rows
        if counts.batch_size is None:
            counts.batch_size = rows
        graph = [t for t in tensors if t.requires_grad]
        if not graph:
            return
        counts.forward_calls_with_grad += 1
        seen_in = {"sweep": -1}

        def on_grad(grad: torch.Tensor) -> None:
            if not active:
                return
            if not counts._in_sweep:
                counts._in_sweep = True
                counts._sweep += 1
                counts.backward_sweeps += 1
                torch.autograd.Variable._execution_engine.queue_callback(end_sweep)
            if seen_in["sweep"] != counts._sweep:  # this forward's graph, first time in this sweep
                seen_in["sweep"] = counts._sweep
                counts.backward_rows += grad.size(0) if grad.dim() > 0 else rows

        for tensor in graph:
            tensor.register_hook(on_grad)

    handle = target.register_forward_hook(on_forward)
    try:
        yield counts
    finally:
        active = False
        handle.remove()


def peak_memory() -> dict[str, float]:
    """The most memory this process has held so far, in MiB, as a run's metrics record it.

    ``peak_rss_mib``: the peak resident set size (``getrusage``'s ``ru_maxrss``; what Linux shows as
    VmHWM), loading included: what a machine needs to run the same job. ``peak_cuda_allocated_mib``:
    the most tensor memory allocated on the current CUDA device, when one was used.
    """
    peak: dict[str, float] = {}
    try:
        import resource
    except ImportError:  # Windows
        pass
    else:
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak["peak_rss_mib"] = maxrss / 2**20 if sys.platform == "darwin" else maxrss / 2**10  # bytes on macOS, KiB elsewhere
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        peak["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return peak
