"""`rxf predict`: a trained classifier's predictions for every row of a file (see rxf.inference).

    rxf predict --model runs/default --input news.csv                    # -> news.predictions.csv
    rxf predict --model runs/rte/model --input pairs.jsonl --output out.csv
    rxf predict --model runs/sent --input reviews.txt --delimiter tab --text-column review

The output holds the input's rows and columns as they were, plus ``prediction`` (the class name,
the score for regression, the labels over 0.5 for multi-label) and one ``prob_<class>`` column
per class. Columns, delimiter, label separator and maximum length come from the run's
config.yaml when ``--model`` is an ``rxf train`` output; flags override them.
"""

from __future__ import annotations

import argparse

from rxf.errors import RxfError

# The flags that say how to read the data and run the model, shared with `rxf evaluate`:
# flag -> (destination, type, help). None means "as the run was trained" (or the default).
DATA_FLAGS: dict[str, tuple[str, type, str]] = {
    "--text-column": ("text_column", str, "column of the text (default: the run's, else 'text')"),
    "--text-pair-column": ("text_pair_column", str, "column of the second text of pair tasks (default: the run's)"),
    "--delimiter": ("delimiter", str, "delimited text: tab, comma, semicolon, pipe, space or one character (default: the run's; .csv sniffed, .tsv tab)"),
    "--label-separator": ("label_separator", str, "multi-label: the text between labels in one cell, e.g. '|' (default: the run's)"),
    "--max-length": ("max_length", int, "tokens per example, longer ones truncated (default: the run's, else up to 512)"),
    "--batch-size": ("batch_size", int, "rows per forward pass (default: 64)"),
}


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="RUN_OR_MODEL_DIR",
                        help="an rxf train output directory, a model directory, or a hub name")
    for flag, (dest, kind, text) in DATA_FLAGS.items():
        parser.add_argument(flag, dest=dest, type=kind, metavar=kind.__name__.upper(), help=text)
    parser.set_defaults(batch_size=64)  # not a setting of the run: a fixed default
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def data_overrides(args: argparse.Namespace, *extra: str) -> dict:
    names = ["text_column", "text_pair_column", "delimiter", "label_separator", "max_length", *extra]
    return {name: getattr(args, name) for name in names}


def check_data_flags(args: argparse.Namespace) -> None:
    """The values of DATA_FLAGS, checked before the model loads; each error names its flag."""
    from rxf.tasks.files import delimiter_char

    delimiter_char(args.delimiter, "--delimiter")
    for flag in ("--max-length", "--batch-size"):
        value = getattr(args, DATA_FLAGS[flag][0])
        if value is not None and value < 1:
            raise RxfError(f"{flag} {value} must be a whole number > 0")
    for flag in ("--text-column", "--text-pair-column"):
        check_column_flag(flag, getattr(args, DATA_FLAGS[flag][0]))
    if args.label_separator == "":
        raise RxfError("--label-separator is empty: give its value, or leave the flag out")


def check_column_flag(flag: str, value: str | None) -> None:
    """A column given as empty or blank is named before the model loads (no file has such a column)."""
    if value is not None and not value.strip():
        raise RxfError(f"{flag} {value!r} is empty: give the column's name, or leave the flag out")


def cmd_predict(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rxf.inference import (
        add_predictions, data_file, default_output, load_predictor, predict_logits, read_table, texts_of, write_table,
    )
    from rxf.io import check_writable
    from rxf.tasks.files import delimiter_char, file_format

    check_data_flags(args)  # every bad value is named before the model loads
    delimiter_char(args.output_delimiter, "--output-delimiter")
    source, _ = data_file(args.input, "--input")
    output = Path(args.output).expanduser() if args.output else default_output(source)
    if output.exists() and os.path.samefile(output, source):  # the same path, a symbolic or a hard link
        raise RxfError(f"--output {output} is the input file: choose another name, the input is kept as it is")
    file_format(output, "--output")
    check_writable(output, "--output")
    predictor = load_predictor(args.model, **data_overrides(args))
    table = read_table(args.input, "--input", predictor.delimiter)
    texts = texts_of(table, predictor.text_column, "--text-column")
    pairs = texts_of(table, predictor.text_pair_column, "--text-pair-column") if predictor.text_pair_column else None
    logits = predict_logits(predictor, texts, pairs, batch_size=args.batch_size, progress=not args.no_progress)
    written = write_table(add_predictions(predictor, table, logits), output, args.output_delimiter)
    print(f"wrote {len(table.rows)} predictions ({predictor.task_type.replace('_', '-')}) to {written}")
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser(
        "predict",
        help="predict the label of every row of a CSV/TSV/JSONL file with a trained model",
        description="The input's rows with the predicted label (by name) and the class probabilities, or the regression score.",
    )
    add_data_flags(predict)
    predict.add_argument("--input", required=True, metavar="FILE", help=".csv, .tsv, .txt (with --delimiter), .json or .jsonl")
    predict.add_argument("--output", metavar="FILE",
                         help="where the predictions go; its extension sets the format (default: <input>.predictions.<ext>)")
    predict.add_argument("--output-delimiter", metavar="STR", help="delimiter of a delimited-text output (default: the input's)")
    predict.set_defaults(handler=cmd_predict)
