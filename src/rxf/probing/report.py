"""Tables (CSV, markdown) and figures (PNG) of probing results, in the layout of the paper's Figures 3–5.

Rows are flat dicts (one per probe) with at least ``method``, ``seed``, ``task`` and ``value``;
tables show mean ± standard deviation over seeds (sample std, ddof=1) and the number of seeds.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rxf.plots import render_png

Row = dict[str, Any]


def csv_text(rows: Sequence[Row]) -> str:
    """Scalar columns of ``rows`` as CSV text (nested dicts are left to results.json)."""
    columns: list[str] = []
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, (dict, list)):
                columns.append(key)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """Scalar columns of ``rows`` (nested dicts are left to results.json)."""
    path.write_text(csv_text(rows), newline="")


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (0 for one value) and count."""
    array = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if array.size == 0:
        return math.nan, math.nan, 0
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else 0.0, int(array.size)


def format_cell(values: Sequence[float]) -> str:
    mean, std, n = mean_std(values)
    if n == 0:
        return "–"
    return f"{mean:.3f}" if n == 1 else f"{mean:.3f} ± {std:.3f} ({n})"


def pivot(rows: Sequence[Row], row_key: Callable[[Row], str], column_key: Callable[[Row], str], value: str = "value"):
    """``{row label: {column label: [values]}}`` in first-seen order."""
    table: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        table.setdefault(row_key(row), {}).setdefault(column_key(row), []).append(row[value])
    return table


def markdown_table(table: dict[str, dict[str, list[float]]], corner: str) -> str:
    columns: list[str] = []
    for cells in table.values():
        columns.extend(c for c in cells if c not in columns)
    lines = [f"| {corner} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, cells in table.items():
        lines.append(f"| {label} | " + " | ".join(format_cell(cells.get(c, [])) for c in columns) + " |")
    return "\n".join(lines)


def bar_chart(path: Path, table: dict[str, dict[str, list[float]]], title: str, ylabel: str) -> bytes | None:
    """Grouped bars (Figure 3): x = column (target task), one bar per row (method), error bar = std, dots = seeds.
    The PNG for the file ``path`` (rxf.plots.render_png: None if it cannot be drawn)."""
    return render_png(path, lambda plt: _draw_bars(plt, table, title, ylabel), dpi=130)


def _draw_bars(plt: Any, table: dict[str, dict[str, list[float]]], title: str, ylabel: str) -> Any:
    methods = list(table)
    tasks: list[str] = []
    for cells in table.values():
        tasks.extend(t for t in cells if t not in tasks)
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(tasks), 3.6))
    for i, method in enumerate(methods):
        xs = np.arange(len(tasks)) + (i - (len(methods) - 1) / 2) * width
        stats = [mean_std(table[method].get(task, [])) for task in tasks]
        ax.bar(xs, [s[0] for s in stats], width, yerr=[s[1] for s in stats], capsize=2, label=method)
        for x, task in zip(xs, tasks):
            seeds = table[method].get(task, [])
            if len(seeds) > 1:
                ax.scatter([x] * len(seeds), seeds, s=6, color="black", zorder=3)
    ax.set_xticks(np.arange(len(tasks)), tasks)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def line_chart(
    path: Path,
    panels: dict[str, dict[str, dict[str, list[float]]]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> bytes | None:
    """One panel per key of ``panels`` (Figure 5: per task; Figure 4: one panel), one line per method, ±std band.
    The PNG for the file ``path`` (rxf.plots.render_png: None if it cannot be drawn)."""
    return render_png(path, lambda plt: _draw_lines(plt, panels, title, xlabel, ylabel), dpi=130)


def _draw_lines(plt: Any, panels: dict[str, dict[str, dict[str, list[float]]]], title: str, xlabel: str, ylabel: str) -> Any:
    fig, axes = plt.subplots(1, len(panels), figsize=(0.6 + 3.4 * len(panels), 3.4), squeeze=False)
    for ax, (panel, table) in zip(axes[0], panels.items()):
        for method, cells in table.items():
            labels = list(cells)
            stats = [mean_std(cells[label]) for label in labels]
            means = np.array([s[0] for s in stats])
            stds = np.array([s[1] for s in stats])
            xs = np.arange(len(labels))
            ax.plot(xs, means, marker="o", label=method)
            ax.fill_between(xs, means - stds, means + stds, alpha=0.15)
            ax.set_xticks(xs, labels, rotation=20, fontsize=8)
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
