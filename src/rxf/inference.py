"""Using a trained classifier: predictions for a file, and evaluations with a per-class report.

    rxf predict --model runs/default --input reviews.csv               # -> reviews.predictions.csv
    rxf evaluate --model runs/default --eval-file dev.jsonl             # -> runs/default/eval-dev/
    rxf evaluate --model runs/rte --task glue/rte --data-dir ../shared/data/glue

``--model`` is an ``rxf train`` output directory (its ``model/`` is loaded, and its
``config.yaml`` says which columns hold the text, the text pair and the label, the delimiter, the
label separator and the maximum length), or any sequence-classification model directory or hub
name (then the columns are ``text``/``text_pair``/``label`` unless flags say otherwise). What
the model is comes from its own config, as with ``pipeline()``: the class names are its
``id2label``, the task type its ``problem_type`` (regression for one output, multi-label for
``multi_label_classification``). A saved R4F model is a plain transformers model, so it loads here
as any other.

Files are read row by row with their cells kept as written (a predictions file is the input
file with columns added), in the formats training reads: .csv (delimiter sniffed), .tsv, .txt
with a delimiter, .json (an array of objects), .jsonl.

Predictions add ``prediction`` (the class name; the score for regression; the labels over 0.5
for multi-label, joined by the label separator in delimited text) and, for classifiers, one
``prob_<class>`` column per class (softmax; sigmoid per label for multi-label).

An evaluation is the task's metrics plus, for classifiers, scikit-learn's per-class precision,
recall, F1 and support and the confusion matrix (multi-label: a 2×2 count per label), written as
JSON, markdown and PNG. Regression has no classes: its report is the metrics.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import numpy as np

from rxf.errors import RxfError

PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "prob_"
DEFAULT_LABEL_SEPARATOR = "|"  # joins multi-label predictions in delimited text when the run names none


# ---------------------------------------------------------------------------------------------
# The model and the settings of the run that trained it


@dataclass
class Predictor:
    """A loaded classifier with the settings its run trained it with (or the defaults)."""

    model: Any
    tokenizer: Any
    source: str  # what --model named
    task_type: str  # classification | regression | multi_label
    label_names: list[str] | None  # in id order; None for regression
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    max_length: int = 128
    delimiter: str | None = None
    label_separator: str | None = None
    run_config: dict[str, Any] | None = None  # the run's config.yaml, when --model is a run directory
    run_dir: Path | None = None  # that run directory

    @property
    def label_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names or [])}


def _run_columns(run_config: dict[str, Any]) -> dict[str, Any]:
    """The column settings of a run: its config's, or for a GLUE task the header names of its TSVs."""
    settings = {
        key: run_config.get(key)
        for key in ("text_column", "text_pair_column", "label_column", "max_length", "delimiter", "label_separator")
        if run_config.get(key) is not None
    }
    task = run_config.get("task")
    if task and not run_config.get("train_file"):
        from rxf.tasks.glue import GLUE, glue_key

        key = glue_key(str(task))
        if key is not None and isinstance(GLUE[key].text, str):
            settings["text_column"] = GLUE[key].text
            settings["text_pair_column"] = GLUE[key].text_pair if isinstance(GLUE[key].text_pair, str) else None
            settings["label_column"] = "label"
    return settings


# The settings of a run's config.yaml that predict and evaluate use, checked as rxf train checks them.
RUN_SETTINGS = (
    "task", "data_dir", "train_file", "eval_file", "text_column", "text_pair_column", "label_column", "task_type",
    "delimiter", "label_separator", "max_length", "max_eval_samples", "seed", "data_seed",
)


def read_run_config(path: Path) -> dict[str, Any]:
    """A run's config.yaml; a hand-edited value of the wrong type (``delimiter: 5``, ``max_length: true``) is
    named with the file, by the checks of ``rxf train``."""
    from rxf.config import Settings, read_yaml_mapping
    from rxf.train import TrainConfig

    values = read_yaml_mapping(path)
    TrainConfig.from_dict(Settings({key: values[key] for key in RUN_SETTINGS if key in values}, source=str(path)))
    return values


def load_predictor(model: str, **overrides: Any) -> Predictor:
    """The classifier that ``model`` names (run directory, model directory or hub name); ``overrides``
    (text_column, text_pair_column, label_column, max_length, delimiter, label_separator) win over the run's settings."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rxf.models.local import fit_max_length, max_positions, resolve_model

    path = Path(model).expanduser()
    run_config: dict[str, Any] | None = None
    if path.is_dir() and not (path / "config.json").is_file():
        if (path / "model" / "config.json").is_file():
            run_dir, location = path, resolve_model(str(path / "model"))  # checked as any model directory
        elif (path / "metrics.json").is_file():
            raise RxfError(
                f"run {path} saved no model (it ran with save_model: false): train it again with save_model: true"
            )
        elif (path / "run.json").is_file():
            raise RxfError(
                f"run {path} has not finished: it has no model/ yet (run the same rxf train command again to resume "
                "it, then use its model)"
            )
        else:
            raise RxfError(
                f"--model {path} is neither an rxf train output directory (holding model/) nor a model directory "
                "(holding config.json)"
            )
    else:
        location = resolve_model(model)
        run_dir = path.parent if path.name == "model" and (path.parent / "config.yaml").is_file() else None
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        run_config = read_run_config(run_dir / "config.yaml")
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        network, loading = AutoModelForSequenceClassification.from_pretrained(
            location, use_safetensors=True, output_loading_info=True  # rxf never unpickles weights
        )
    except (OSError, ValueError) as error:
        raise RxfError(f"cannot load the model {model!r} as a sequence classifier: {str(error).splitlines()[0]}") from None
    missing = sorted(loading["missing_keys"])
    if missing:  # e.g. a bare encoder: transformers gives it a new, random classification head
        shown = ", ".join(missing[:4]) + (f", ... ({len(missing)} in all)" if len(missing) > 4 else "")
        raise RxfError(
            f"--model {model} is not a trained classifier: its weights lack {shown}, which would be random: "
            f"fine-tune it first (rxf train --model {model} ...) and pass the run's directory"
        )
    config = network.config
    if config.problem_type == "multi_label_classification":
        task_type = "multi_label"
    elif config.problem_type == "regression" or config.num_labels == 1:
        task_type = "regression"
    else:
        task_type = "classification"
    label_names = None if task_type == "regression" else [str(config.id2label[i]) for i in range(config.num_labels)]
    settings: dict[str, Any] = _run_columns(run_config) if run_config else {}
    if not run_config:  # as long as the tokenizer and the position table allow, up to 512
        limits = [512, getattr(tokenizer, "model_max_length", None), max_positions(network)]
        settings["max_length"] = min(int(n) for n in limits if isinstance(n, int) and n > 0)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if not isinstance(settings.get("max_length", 1), int) or settings.get("max_length", 1) < 1:
        raise RxfError(f"max_length must be a whole number > 0, got {settings['max_length']!r}")
    settings["max_length"] = fit_max_length(settings["max_length"], network, str(model))
    import torch

    network.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return Predictor(network, tokenizer, str(model), task_type, label_names, run_config=run_config, run_dir=run_dir, **settings)


def predict_logits(
    predictor: Predictor, texts: list[str], pairs: list[str] | None = None, *, batch_size: int = 64, progress: bool = True
) -> np.ndarray:
    """The model's logits (N, C) for the texts, in batches, with a progress bar over rows."""
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise RxfError(f"batch_size must be > 0, got {batch_size}")
    device = next(predictor.model.parameters()).device
    out = []
    with tqdm(total=len(texts), desc="predicting", unit="row", disable=not progress) as bar, torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = predictor.tokenizer(
                texts[start : start + batch_size],
                None if pairs is None else pairs[start : start + batch_size],
                truncation=True,
                max_length=predictor.max_length,
                padding=True,
                return_tensors="pt",
            ).to(device)
            out.append(predictor.model(**batch).logits.float().cpu().numpy())
            bar.update(len(batch["input_ids"]))
    return np.concatenate(out) if out else np.zeros((0, predictor.model.config.num_labels), dtype=np.float32)


def probabilities(logits: np.ndarray, task_type: str) -> np.ndarray:
    """Class probabilities (softmax), label probabilities (sigmoid, multi-label) or scores (regression, (N,))."""
    logits = np.asarray(logits, dtype=np.float64)
    if task_type == "regression":
        return logits.reshape(len(logits), -1)[:, 0]
    if task_type == "multi_label":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Files: rows in, the same rows out


@dataclass
class Table:
    """The rows of a data file, cells as written, with the line each row starts on (for errors)."""

    path: Path
    rows: list[dict[str, Any]]
    columns: list[str]
    kind: str  # "csv" (delimited text) or "json"
    delimiter: str | None
    lines: list[int] = field(default_factory=list)

    def where(self, i: int) -> str:
        return f"{self.path}, line {self.lines[i]}" if self.lines else f"{self.path}, record {i + 1}"


def data_file(path: str | Path, option: str) -> tuple[Path, str]:
    """(path, "csv" or "json") of a data file to read, checked before any work: a regular file that can be
    read, with the extension of a format rxf reads."""
    from rxf.io import regular_file
    from rxf.tasks.files import file_format

    path = regular_file(path, option)
    return path, file_format(path, option)


def read_table(path: str | Path, option: str, delimiter: str | None = None) -> Table:
    """A .csv/.tsv/.txt/.json/.jsonl file as rows, read as training reads it; every problem an RxfError
    naming the file (and line)."""
    from rxf import io
    from rxf.tasks.files import file_delimiter

    path, kind = data_file(path, option)
    if kind == "csv":
        table = _read_delimited(path, option, file_delimiter(path, delimiter, option))
    else:
        io.check_data_file(path, option, "json")  # an array, one object, or JSON Lines; errors by line
        text = io.read_text(path, option)
        if text.lstrip().startswith("["):
            records, lines = json.loads(text), []
        else:
            try:  # one object, possibly over several lines, is one row (as training reads a .json file)
                records, lines = [json.loads(text)], [1]
            except json.JSONDecodeError:
                numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
                records, lines = [json.loads(line) for _, line in numbered], [n for n, _ in numbered]
        if not all(isinstance(r, dict) for r in records):
            raise RxfError(f"{option} {path}: every record must be a JSON object such as {{\"text\": \"...\"}}")
        columns = list(dict.fromkeys(key for record in records for key in record))
        table = Table(path, records, columns, "json", None, lines)
    if not table.rows:
        raise RxfError(f"{option} {path} has no data rows")
    return table


def _read_delimited(path: Path, option: str, sep: str) -> Table:
    """Delimited text, quoted as pandas (which training reads it with) quotes it, cells of any length."""
    from rxf import io

    text = io.read_text(path, option)
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))  # a cell can be as long as the file
    reader = csv.reader(StringIO(text, newline=""), delimiter=sep)
    rows, lines = [], []
    try:
        header = next(reader, None)
        if not header:
            raise RxfError(f"{option} {path} is empty")
        repeated = next((name for i, name in enumerate(header) if name in header[:i]), None)
        if repeated is not None:
            raise RxfError(f"{option} {path}, line 1: column {repeated!r} appears twice in the header: give each column its own name")
        start = reader.line_num + 1
        for cells in reader:
            if cells:
                if len(cells) != len(header):
                    raise RxfError(
                        f"{option} {path}, line {start}: {len(cells)} fields where the header has {len(header)} "
                        f"(read with delimiter {sep!r}: set --delimiter if the file uses another)"
                    )
                rows.append(dict(zip(header, cells)))
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as error:
        raise RxfError(f"{option} {path}, line {reader.line_num}: cannot be read as delimited text ({error})") from None
    last = lines[-1] if lines else 1  # the line the last row (or the header) starts on
    if _quote_left_open("".join(StringIO(text, newline="").readlines()[last - 1 :]), sep):
        raise RxfError(
            f"{option} {path}, line {last}: a quote (\") opens a cell that is never closed, so the rest of the "
            'file would be one cell: close it, or write a quote inside a quoted cell as ""'
        )
    return Table(path, rows, header, "csv", sep, lines)


def _quote_left_open(last_row: str, sep: str) -> bool:
    """Whether the text of a file's last row ends inside a quoted cell (csv.reader then takes the rest of the
    file as that cell; pandas, which training reads with, refuses it): only then does a line break added at
    the end change a cell, since it lands inside the open one."""
    def rows(text: str) -> list[list[str]]:
        return [row for row in csv.reader(StringIO(text, newline=""), delimiter=sep) if row]

    return rows(last_row) != rows(last_row + "\n")


def column_values(table: Table, column: str, option: str) -> list[Any]:
    """The cells of ``column``; an RxfError naming the existing columns when it is missing."""
    if column not in table.columns:
        from rxf.errors import closest

        raise RxfError(
            f"{table.path} has no column {column!r}{closest(column, table.columns)}: its columns are "
            f"{', '.join(map(str, table.columns))}; set {option} to one of them"
        )
    return [row.get(column) for row in table.rows]


def texts_of(table: Table, column: str, option: str) -> list[str]:
    values = column_values(table, column, option)
    for i, value in enumerate(values):
        if value is None:
            raise RxfError(f"{table.where(i)}: column {column!r} is empty: every row needs a text")
    return [v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in values]


def write_table(table: Table, path: str | Path, delimiter: str | None = None) -> Path:
    """Write ``table``'s rows in the format of ``path``'s extension (delimited text keeps the input's delimiter
    when the extension is the input's; else tab for .tsv, comma for .csv). The file is replaced whole or not at
    all: a failed write (disk full) leaves an earlier file at ``path`` as it was."""
    from rxf.io import replace_files, write_failure
    from rxf.tasks.files import delimiter_char, file_format

    path = Path(path).expanduser()
    kind = file_format(path, "--output")
    out = StringIO()
    if kind == "csv":
        sep = delimiter_char(delimiter, "--output-delimiter") or (
            table.delimiter if table.delimiter and path.suffix.lower() == table.path.suffix.lower()
            else "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
        )
        writer = csv.DictWriter(out, fieldnames=table.columns, delimiter=sep, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in table.rows)
    elif path.suffix.lower() == ".jsonl":
        out.writelines(json.dumps(_finite(row), ensure_ascii=False) + "\n" for row in table.rows)
    else:
        json.dump(_finite(table.rows), out, ensure_ascii=False, indent=1)
        out.write("\n")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_files({path: out.getvalue()})
    except OSError as error:
        raise write_failure(error, path.parent, path.name) from None
    return path


def _finite(value: Any) -> Any:
    """``value`` with NaN and ±inf (which JSON has not) written as null, in lists and objects too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _cell(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value


def add_predictions(predictor: Predictor, table: Table, logits: np.ndarray) -> Table:
    """``table`` with the prediction columns added (replaced, when the input already has them)."""
    scores = probabilities(logits, predictor.task_type)
    names = predictor.label_names or []
    new_columns = [PREDICTION_COLUMN] + [f"{PROBABILITY_PREFIX}{name}" for name in names]
    separator = predictor.label_separator or DEFAULT_LABEL_SEPARATOR
    for i, row in enumerate(table.rows):
        if predictor.task_type == "regression":
            row[PREDICTION_COLUMN] = round(float(scores[i]), 6)
            continue
        if predictor.task_type == "multi_label":
            chosen = [name for name, p in zip(names, scores[i]) if p > 0.5]
            row[PREDICTION_COLUMN] = chosen if table.kind == "json" else separator.join(chosen)
        else:
            row[PREDICTION_COLUMN] = names[int(np.argmax(scores[i]))]
        for name, p in zip(names, scores[i]):
            row[f"{PROBABILITY_PREFIX}{name}"] = round(float(p), 6)
    table.columns = [c for c in table.columns if c not in new_columns] + new_columns
    return table


def default_output(input_path: Path) -> Path:
    """``reviews.csv`` -> ``reviews.predictions.csv``, beside the input."""
    return input_path.with_name(f"{input_path.stem}.predictions{input_path.suffix}")


# ---------------------------------------------------------------------------------------------
# Gold labels and the evaluation report


def gold_labels(predictor: Predictor, table: Table) -> np.ndarray:
    """The label column as the model's ids (N,), scores (N,) or 0/1 rows (N, C); errors name the row."""
    from rxf.tasks.files import _label_key

    column = predictor.label_column
    values = column_values(table, column, "--label-column")
    ids = predictor.label_ids
    out: list[Any] = []
    for i, value in enumerate(values):
        if predictor.task_type != "multi_label" and (value is None or value == ""):
            raise RxfError(f"{table.where(i)}: label column {column!r} is empty: every row needs a label to evaluate")
        if predictor.task_type == "regression":
            try:
                score = float(value)
            except (TypeError, ValueError):
                raise RxfError(f"{table.where(i)}: label {value!r} is not a number, as the regression model needs") from None
            if not math.isfinite(score):
                raise RxfError(f"{table.where(i)}: label {value!r} is not a finite number, as the regression model needs")
            out.append(score)
            continue
        if predictor.task_type == "multi_label":
            if value is None or value == "":
                keys = []
            elif isinstance(value, list):
                keys = [_label_key(v) for v in value]
            elif isinstance(value, str) and predictor.label_separator:
                keys = [part.strip() for part in value.split(predictor.label_separator) if part.strip()]
            elif isinstance(value, str) and value.strip() not in ids:
                raise RxfError(
                    f"{table.where(i)}: label {value!r} is text, but the model is multi-label: "
                    "set --label-separator (e.g. '|' for 'sport|politics') or use a JSON list"
                )
            else:
                keys = [_label_key(value)]
            row = np.zeros(len(ids))
            for key in keys:
                row[_class_id(key, ids, table, i)] = 1.0
            out.append(row)
            continue
        out.append(_class_id(_label_key(value), ids, table, i))
    return np.asarray(out)


def _class_id(key: str, ids: dict[str, int], table: Table, i: int) -> int:
    if key in ids:
        return ids[key]
    try:  # "1.0" in a text file is the label 1
        number = float(key)
        if number.is_integer() and str(int(number)) in ids:
            return ids[str(int(number))]
    except ValueError:
        pass
    raise RxfError(f"{table.where(i)}: label {key!r} is not one of the model's classes: {', '.join(list(ids)[:20])}")


@dataclass
class Evaluation:
    """Metrics, and for classifiers the per-class report and the confusion matrix."""

    metrics: dict[str, float]
    num_examples: int
    task_type: str
    label_names: list[str] | None
    per_class: dict[str, dict[str, float]] | None = None  # class (or "macro avg", ...) -> precision, recall, f1-score, support
    confusion: list[list[int]] | None = None  # rows true, columns predicted; multi-label: per label [[TN, FP], [FN, TP]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics, "num_examples": self.num_examples, "task_type": self.task_type,
            "label_names": self.label_names, "per_class": self.per_class, "confusion_matrix": self.confusion,
        }


def metric_set_for(task_type: str) -> str:
    return {"regression": "regression", "multi_label": "multi_label"}.get(task_type, "classification")


def evaluate_logits(
    logits: np.ndarray, labels: np.ndarray, task_type: str, label_names: list[str] | None, metric_sets: list[str] | None = None
) -> Evaluation:
    """The metrics of ``metric_sets`` (default: the task type's) and, for classifiers, the per-class report."""
    from sklearn.metrics import classification_report, confusion_matrix, multilabel_confusion_matrix

    from rxf import metrics

    metric_values: dict[str, float] = {}
    for name in metric_sets or [metric_set_for(task_type)]:
        metric_values.update(metrics.compute(name, logits, labels))
    evaluation = Evaluation(metric_values, len(labels), task_type, label_names)
    if task_type == "regression":
        return evaluation
    classes = list(range(len(label_names or [])))
    if task_type == "multi_label":
        truth, predicted = np.asarray(labels).round().astype(int), metrics.to_multi_hot(logits)
        evaluation.confusion = multilabel_confusion_matrix(truth, predicted, labels=classes).tolist()
    else:
        truth, predicted = np.asarray(labels).astype(int), metrics.to_class_ids(logits)
        evaluation.confusion = confusion_matrix(truth, predicted, labels=classes).tolist()
    evaluation.per_class = classification_report(
        truth, predicted, labels=classes, target_names=label_names, output_dict=True, zero_division=0
    )
    return evaluation


def markdown_report(evaluation: Evaluation, title: str) -> str:
    """The evaluation as markdown: metrics, per-class table, confusion matrix."""
    lines = [f"# {title}", "", f"{evaluation.num_examples} examples, {evaluation.task_type.replace('_', '-')}.", "",
             "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in evaluation.metrics.items()]
    if evaluation.per_class is not None:
        lines += ["", "## Per class", "", "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for name, row in evaluation.per_class.items():
            if isinstance(row, dict):
                lines.append(f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1-score']:.4f} | {int(row['support'])} |")
            else:  # "accuracy" is one number in scikit-learn's report
                lines.append(f"| {name} | | | {row:.4f} | |")
    names = evaluation.label_names or []
    if evaluation.confusion is not None and evaluation.task_type == "multi_label":
        lines += ["", "## Confusion per label", "", "| label | true neg. | false pos. | false neg. | true pos. |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {name} | {m[0][0]} | {m[0][1]} | {m[1][0]} | {m[1][1]} |" for name, m in zip(names, evaluation.confusion)]
    elif evaluation.confusion is not None:
        lines += ["", "## Confusion matrix (rows: true class, columns: predicted class)", "",
                  "| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        lines += [f"| {name} | " + " | ".join(str(c) for c in row) + " |" for name, row in zip(names, evaluation.confusion)]
    return "\n".join(lines) + "\n"


def confusion_png(evaluation: Evaluation, path: Path, title: str) -> bytes | None:
    """The confusion matrix as the bytes of the PNG ``path`` (multi-label: the four counts per label); None
    (one warning) if it cannot be drawn."""
    from rxf.plots import render_png

    return render_png(path, lambda plt: _draw_confusion(plt, evaluation, title), dpi=110)


def _draw_confusion(plt: Any, evaluation: Evaluation, title: str) -> Any:
    names = evaluation.label_names or []
    if evaluation.task_type == "multi_label":
        counts = np.array([[m[0][0], m[0][1], m[1][0], m[1][1]] for m in evaluation.confusion])
        columns, rows, xlabel, ylabel = ["true neg.", "false pos.", "false neg.", "true pos."], names, "", "label"
    else:
        counts = np.array(evaluation.confusion)
        columns, rows, xlabel, ylabel = names, names, "predicted class", "true class"
    size = max(4.0, 0.6 * max(len(columns), len(rows)) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ax.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    threshold = counts.max() / 2 if counts.size else 0
    for (r, c), value in np.ndenumerate(counts):
        ax.text(c, r, str(value), ha="center", va="center", color="white" if value > threshold else "black", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_evaluation(evaluation: Evaluation, folder: Path, prefix: str, title: str, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """``<prefix>_report.md`` and ``<prefix>_confusion_matrix.png`` (classifiers), plus
    ``<prefix>_results.json`` when ``extra`` is given (what else the JSON should say); returns the paths.

    All are written in one :func:`rxf.io.replace_files`, so a failed write (disk full, read-only) leaves an
    earlier report whole; a confusion matrix that cannot be drawn removes an earlier one (with a warning)."""
    from rxf.io import replace_files, write_failure

    paths = {"report": folder / f"{prefix}_report.md"}
    files: dict[Path, str | bytes | None] = {paths["report"]: markdown_report(evaluation, title)}
    if extra is not None:
        paths["results"] = folder / f"{prefix}_results.json"
        payload = {**extra, **evaluation.to_dict()}
        files[paths["results"]] = json.dumps(_finite(payload), indent=2, default=_json_default) + "\n"
    if evaluation.confusion is not None:  # classes to count (not regression)
        png = folder / f"{prefix}_confusion_matrix.png"
        files[png] = confusion_png(evaluation, png, title)
        if files[png] is not None:
            paths["confusion_matrix"] = png
    try:
        folder.mkdir(parents=True, exist_ok=True)
        replace_files(files)
    except OSError as error:
        raise write_failure(error, folder, f"the {prefix} report") from None
    return {name: str(p) for name, p in paths.items()}


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item() if math.isfinite(float(value)) else None
    return str(value)


def metric_sets(predictor: Predictor, task_metric_set: str | None = None) -> list[str]:
    """The task type's metric set, plus the task's own (GLUE: MCC for CoLA, F1 for MRPC) where it has one."""
    from rxf.metrics import GLUE_METRICS, REGRESSION_SETS
    from rxf.tasks.glue import glue_key

    sets = [metric_set_for(predictor.task_type)]
    if task_metric_set is None and predictor.run_config and predictor.run_config.get("task"):
        key = glue_key(str(predictor.run_config["task"]))
        task_metric_set = GLUE_METRICS.get(key) if key else None
    if task_metric_set and (task_metric_set in REGRESSION_SETS) == (predictor.task_type == "regression"):
        if predictor.task_type != "multi_label" and task_metric_set not in sets:
            sets.append(task_metric_set)
    return sets


def task_labels(predictor: Predictor, task: Any, labels: list[Any]) -> np.ndarray:
    """A task's labels (ids over task.label_names, scores, or 0/1 rows) as the model's ids."""
    if predictor.task_type == "regression" or task.is_regression:
        if predictor.task_type != "regression" or not task.is_regression:
            raise RxfError(f"task {task.name} is {'' if task.is_regression else 'not '}regression, the model is {predictor.task_type}")
        return np.asarray(labels, dtype=np.float64)
    ids = predictor.label_ids
    missing = [name for name in task.label_names if name not in ids]
    if missing or task.multi_label != (predictor.task_type == "multi_label"):
        raise RxfError(
            f"the model's classes ({', '.join(ids)}) are not task {task.name}'s ({', '.join(task.label_names)}): "
            "evaluate a model on the task it was trained for"
        )
    to_model = np.array([ids[name] for name in task.label_names])
    if task.multi_label:
        rows = np.zeros((len(labels), len(ids)))
        rows[:, to_model] = np.asarray(labels)
        return rows
    return to_model[np.asarray(labels, dtype=np.int64)]
