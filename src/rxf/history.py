"""A run's training and evaluation curves: ``history.jsonl`` as it goes, ``history.png`` at the end.

:class:`TrainingHistory` is a ``TrainerCallback`` (``rxf train`` adds it to every run). Each log
entry of the Trainer becomes one JSON line, written and flushed when it is logged, so a run that
crashes keeps its curves up to its last log:

* training entries: ``loss`` (the method's loss), ``task_loss``, the method's regulariser (e.g.
  ``r3f_divergence``), ``learning_rate``, ``grad_norm``, ``epoch``, ``step``, ``wall_time_s``;
* evaluation entries: ``eval_loss`` and every dev metric (``eval_accuracy``, ...), with ``step``.

At the end of training it draws ``history.png`` (needs matplotlib): the loss and its parts, the
learning rate, the dev loss and the dev metrics, each against the step. :func:`plot_history`
draws the same figure from a ``history.jsonl`` later (e.g. of a crashed run).

``report_to`` (TensorBoard, W&B, MLflow, ... whatever Trainer supports and is installed) is
Trainer's own logging; :func:`check_report_to` names a mistake before the run starts, and
:func:`keep_tensorboard_logs` puts TensorBoard's event files in ``<output_dir>/tensorboard``
(Trainer's default is inside the checkpoint folder, which a finished run deletes).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from rxf.errors import RxfError, closest

HISTORY_FILE = "history.jsonl"
PLOT_FILE = "history.png"
# Keys of a training log entry that are not a loss (the rest are the loss and its parts).
NOT_LOSSES = {"learning_rate", "grad_norm", "epoch", "step", "wall_time_s"}
# Keys of an evaluation entry that are not a dev score.
NOT_SCORES = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "epoch", "step", "wall_time_s"}
# Packages to install for each integration (where it is not the integration's own name).
INTEGRATION_PACKAGES = {"tensorboard": "tensorboard (pip install 'rxf[tensorboard]')", "comet_ml": "comet-ml"}


class TrainingHistory(TrainerCallback):
    """Writes every Trainer log entry to ``<output_dir>/history.jsonl`` as it is logged, and plots them at the end."""

    def __init__(self, output_dir: str | Path, title: str = ""):
        self.path = Path(output_dir) / HISTORY_FILE
        self.plot_path = Path(output_dir) / PLOT_FILE
        self.title = title

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        # A resumed run restores its log history from the checkpoint: start the file from it, so
        # that entries logged after that checkpoint (and lost with the crash) are not kept twice.
        with open(self.path, "w") as f:
            f.writelines(json.dumps(entry, default=str) + "\n" for entry in state.log_history)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({**logs, "step": state.global_step}, default=str) + "\n")
            f.flush()

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            plot_history(state.log_history, self.plot_path, self.title)


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a ``history.jsonl`` (a torn last line, from a crash mid-write, is skipped)."""
    path = Path(path)
    if path.is_dir():
        path = path / HISTORY_FILE
    from rxf.io import iter_lines

    entries = []
    for line in iter_lines(path, "history file"):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def _series(entries: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(e["step"], e[key]) for e in entries if isinstance(e.get(key), (int, float)) and math.isfinite(e[key])]
    return [p[0] for p in points], [p[1] for p in points]


def plot_history(entries: list[dict[str, Any]], path: str | Path, title: str = "") -> Path | None:
    """Four panels against the step: training loss and its parts, learning rate, dev loss, dev metrics.

    Returns the PNG's path, or None (with a note on stderr) when it could not be drawn.
    """
    from rxf.plots import save_figure

    return save_figure(path, lambda plt: _draw_history(plt, entries, title), dpi=110)


def _draw_history(plt: Any, entries: list[dict[str, Any]], title: str) -> Any:
    train = [e for e in entries if "loss" in e and "step" in e]
    evals = [e for e in entries if "step" in e and any(k.startswith("eval_") for k in e)]
    loss_keys = [k for k in ("loss", "task_loss") if any(k in e for e in train)]
    # The regulariser is often orders of magnitude below the loss: it gets its own axis on the right.
    regularizer_keys = list(dict.fromkeys(k for e in train for k in e if k not in NOT_LOSSES and k not in ("loss", "task_loss")))
    score_keys = list(dict.fromkeys(k for e in evals for k in e if k.startswith("eval_") and k not in NOT_SCORES))

    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    panels = [
        (axes[0][0], train, loss_keys, "training loss and its parts"),
        (axes[0][1], train, ["learning_rate"], "learning rate"),
        (axes[1][0], evals, ["eval_loss"], "dev loss"),
        (axes[1][1], evals, score_keys, "dev metrics"),
    ]
    for ax, rows, keys, name in panels:
        drawn = False
        for key in keys:
            steps, values = _series(rows, key)
            if steps:
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key.removeprefix("eval_"))
                drawn = True
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if drawn and len(keys) > 1:
            ax.legend(fontsize=8)
        if not drawn:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    if regularizer_keys:
        right = axes[0][0].twinx()
        for key, color in zip(regularizer_keys, ("tab:green", "tab:red", "tab:purple")):
            steps, values = _series(train, key)
            right.plot(steps, values, linestyle="--", color=color, label=f"{key} (right axis)")
        right.set_ylabel("regulariser")
        handles = [h for ax in (axes[0][0], right) for h in ax.get_legend_handles_labels()[0]]
        axes[0][0].legend(handles=handles, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def check_report_to(report_to: Any) -> list[str]:
    """``report_to`` as a list of installed Trainer integrations; an RxfError naming a wrong or missing one."""
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else report_to
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise RxfError(f"report_to must be a list of names such as [tensorboard], got {report_to!r}")
    names = [n.strip() for n in names if n.strip() and n.strip() != "none"]
    if not names:
        return []
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    installed = get_available_reporting_integrations()
    if names == ["all"]:
        return installed
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise RxfError(
                f"report_to {name!r}{closest(name, INTEGRATION_TO_CALLBACK)} is not an integration of Trainer: "
                f"use any of {', '.join(INTEGRATION_TO_CALLBACK)}, or all (every installed one)"
            )
        if name not in installed:
            package = INTEGRATION_PACKAGES.get(name, name)
            raise RxfError(f"report_to {name!r}: its package is not installed: install {package}")
    return names


def keep_tensorboard_logs(trainer: Any, folder: str | Path) -> None:
    """Have Trainer's TensorBoard callback (if any) write to ``folder`` unless TENSORBOARD_LOGGING_DIR says otherwise."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(folder)
