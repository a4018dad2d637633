"""`rxf evaluate`: a trained classifier's metrics, per-class report and confusion matrix (see rxf.inference).

    rxf evaluate --model runs/default                                  # the run's own dev set again
    rxf evaluate --model runs/default --eval-file test.csv             # a labelled file
    rxf evaluate --model runs/rte --task glue/rte --data-dir ../shared/data/glue

Writes ``eval_results.json`` (metrics, per-class precision/recall/F1/support, confusion matrix),
``eval_report.md`` and ``eval_confusion_matrix.png`` into ``--output-dir`` (default: inside the
run directory, ``eval-<file or task>``; for a bare model, ``./eval-<file or task>``).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from rxf.commands.predict import add_data_flags, check_column_flag, check_data_flags, data_overrides
from rxf.errors import RxfError


def _task_evaluation(predictor, args):
    """(logits, labels, metric sets, what was evaluated) for --task, or the run's own task."""
    from rxf.inference import metric_sets, predict_logits, task_labels
    from rxf.tasks import load_task

    run = predictor.run_config or {}
    if args.task is not None:
        options = {"task": args.task, "data_dir": args.data_dir}
    elif run:
        options = {k: run.get(k) for k in ("task", "data_dir", "train_file", "eval_file", "text_column",
                                           "text_pair_column", "label_column", "task_type", "delimiter", "label_separator")}
        options = {k: v for k, v in options.items() if v is not None}
        options.update(_run_data_paths(predictor))
        options["max_eval_samples"] = run.get("max_eval_samples")
        options["seed"] = run.get("data_seed", 0) if run.get("data_seed") is not None else run.get("seed", 0)
    else:
        raise RxfError(f"--model {args.model} is not an rxf train run: say what to evaluate on with --eval-file or --task")
    if args.max_eval_samples is not None:
        options["max_eval_samples"] = args.max_eval_samples
    task = load_task(options.pop("task", None), **options)
    split = args.split or next(iter(task.eval))
    if split not in task.eval:
        raise RxfError(f"task {task.name} has no split {split!r}: its evaluation splits are {', '.join(task.eval)}")
    data = task.eval[split]
    pairs = data["text_pair"] if "text_pair" in data.column_names else None
    logits = predict_logits(predictor, list(data["text"]), None if pairs is None else list(pairs),
                            batch_size=args.batch_size, progress=not args.no_progress)
    labels = task_labels(predictor, task, list(data["label"]))
    return logits, labels, metric_sets(predictor, task.metric_set), f"{task.name}, split {split}"


def _run_data_paths(predictor) -> dict[str, str]:
    """The data paths of the run's config.yaml as the run resolved them: run.json holds them made absolute
    (config.yaml as typed, relative to where the run started); one that does not exist is named with config.yaml."""
    from rxf.io import read_json

    manifest = predictor.run_dir / "run.json"
    recorded = read_json(manifest, "run manifest") if manifest.is_file() else {}
    settings = recorded.get("settings") if isinstance(recorded, dict) else None
    paths = {}
    for key in ("data_dir", "train_file", "eval_file"):
        absolute = settings.get(key) if isinstance(settings, dict) else None
        value = absolute if isinstance(absolute, str) else predictor.run_config.get(key)
        if value is None:
            continue
        if not Path(value).expanduser().exists():
            where = "" if Path(value).is_absolute() else f" (relative to {Path.cwd()})"
            raise RxfError(
                f"{key} {value} of run {predictor.run_dir} (its config.yaml) does not exist{where}: "
                "pass the data to evaluate on with --eval-file (or --task)"
            )
        paths[key] = value
    return paths


def _file_evaluation(predictor, args):
    from rxf.inference import gold_labels, metric_sets, predict_logits, read_table, texts_of

    table = read_table(args.eval_file, "--eval-file", predictor.delimiter)
    texts = texts_of(table, predictor.text_column, "--text-column")
    pairs = texts_of(table, predictor.text_pair_column, "--text-pair-column") if predictor.text_pair_column else None
    labels = gold_labels(predictor, table)
    logits = predict_logits(predictor, texts, pairs, batch_size=args.batch_size, progress=not args.no_progress)
    return logits, labels, metric_sets(predictor), str(table.path)


def _default_output_dir(args) -> Path:
    name = Path(args.eval_file).stem if args.eval_file else re.sub(r"[^\w.-]+", "-", args.task or "dev")
    model = Path(args.model).expanduser()
    if (model / "model").is_dir():
        return model / f"eval-{name}"
    if model.name == "model" and (model.parent / "config.yaml").is_file():
        return model.parent / f"eval-{name}"
    return Path(f"eval-{name}")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rxf.inference import data_file, evaluate_logits, load_predictor, write_evaluation
    from rxf.io import check_writable

    if args.eval_file and args.task:
        raise RxfError("--eval-file and --task both say what to evaluate on: give one")
    if args.data_dir and not args.task:
        raise RxfError("--data-dir goes with --task (e.g. --task glue/rte --data-dir ../shared/data/glue)")
    for flag, value in (("--split", args.split), ("--max-eval-samples", args.max_eval_samples)):
        if args.eval_file and value is not None:
            raise RxfError(f"{flag} goes with --task or a run's own data: --eval-file is evaluated whole")
    file_flags = {"--text-column": args.text_column, "--text-pair-column": args.text_pair_column,
                  "--label-column": args.label_column, "--delimiter": args.delimiter, "--label-separator": args.label_separator}
    for flag, value in file_flags.items():  # without a file they would be ignored, not obeyed
        if value is not None and not args.eval_file:
            raise RxfError(
                f"{flag} says how to read --eval-file: without one, a task's data or the run's own dev data is read "
                "with its own columns and format (to evaluate on another column, give the data with --eval-file)"
            )
    if args.max_eval_samples is not None and args.max_eval_samples < 1:
        raise RxfError(f"--max-eval-samples {args.max_eval_samples} must be a whole number > 0")
    check_data_flags(args)  # every bad value is named before the model loads
    check_column_flag("--label-column", args.label_column)
    if args.eval_file:
        data_file(args.eval_file, "--eval-file")
    out = Path(args.output_dir).expanduser() if args.output_dir else _default_output_dir(args)
    check_writable(out, "--output-dir", folder=True)
    predictor = load_predictor(args.model, **data_overrides(args, "label_column"))
    if args.eval_file:
        logits, labels, sets, source = _file_evaluation(predictor, args)
    else:
        logits, labels, sets, source = _task_evaluation(predictor, args)
    evaluation = evaluate_logits(logits, labels, predictor.task_type, predictor.label_names, sets)
    from rxf.rundir import output_folder

    with output_folder(out, "--output-dir"):  # a failed write leaves no empty folder of ours behind
        paths = write_evaluation(evaluation, out, "eval", f"{args.model} on {source}", extra={"model": args.model, "data": source})
    print(json.dumps({"data": source, "num_examples": evaluation.num_examples, **evaluation.metrics}, indent=2))
    print("wrote " + ", ".join(paths.values()))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="metrics, per-class report and confusion matrix of a trained model on labelled data",
        description="Evaluate a trained classifier on a labelled file, a task, or (for an rxf train run) its own dev set. "
        "--text-column, --text-pair-column, --delimiter, --label-separator and --label-column say how to read "
        "--eval-file; a task or the run's dev set is read with its own columns and format.",
    )
    add_data_flags(evaluate)
    evaluate.add_argument("--eval-file", metavar="FILE", help="labelled .csv, .tsv, .txt (with --delimiter), .json or .jsonl")
    evaluate.add_argument("--label-column", metavar="STR", help="column of the label in --eval-file (default: the run's, else 'label')")
    evaluate.add_argument("--task", metavar="STR", help="a task instead of a file: glue/rte, bbc_news, a hub dataset, ...")
    evaluate.add_argument("--data-dir", metavar="DIR", help="with --task: where its data is (GLUE root)")
    evaluate.add_argument("--split", metavar="STR", help="with a task: which evaluation split (default: the first)")
    evaluate.add_argument("--max-eval-samples", type=int, metavar="INT", help="with a task: a random subset of this many rows")
    evaluate.add_argument("--output-dir", metavar="DIR", help="where the report goes (default: <run>/eval-<data>)")
    evaluate.set_defaults(handler=cmd_evaluate)
