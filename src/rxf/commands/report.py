"""`rxf report`: the paper's Table 2 and Figure 2 from sweep records or train runs (see rxf.experiments.report).

    rxf report --runs runs/glue-cpu-small --output-dir docs/results/glue
    rxf report --runs runs/rte-standard runs/rte-r3f --output-dir report   # `rxf train` outputs
    rxf report --runs runs/glue-cpu-small --metric glue/mrpc=f1     # another metric for a task
    rxf report --runs docs/results/glue-full/cpu --label r3f-sigma0=R-Drop   # the name shown for a row
    rxf report --runs docs/results/glue-full/cpu --learned glue/rte=0.62   # "not at this scale" below it
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rxf.errors import RxfError


def _pairs(option: str, items: list[str] | None, example: str) -> dict[str, str]:
    """``KEY=VALUE`` items of a repeatable option as a dict; a malformed one is named with the option."""
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise RxfError(f"{option} expects {example}, got {item!r}")
        pairs[key] = value
    return pairs


def _scores(pairs: dict[str, str]) -> dict[str, float]:
    """--learned's values as numbers; one that is not is named."""
    scores = {}
    for task, text in pairs.items():
        try:
            scores[task] = float(text)
        except ValueError:
            raise RxfError(f"--learned {task}={text}: the score must be a number (e.g. {task}=0.62)") from None
    return scores


def cmd_report(args: argparse.Namespace) -> int:
    from rxf.experiments.report import ReportConfig, make_report

    config = ReportConfig(
        runs=args.runs, output_dir=args.output_dir, phase=args.phase,
        metrics=_pairs("--metric", args.metric, "task=metric (e.g. glue/mrpc=f1)"),
        labels=_pairs("--label", args.label, "row=name (e.g. r3f-sigma0=R-Drop)"),
        learned=_scores(_pairs("--learned", args.learned, "task=score (e.g. glue/rte=0.62)")),
    )
    result = make_report(config)
    for name in ("table2.md", "stability.md"):  # written as UTF-8 (rxf.io.replace_files), whatever the locale
        print(Path(result["paths"][name]).read_text(encoding="utf-8"))
    print("wrote " + ", ".join(result["paths"].values()))
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser(
        "report",
        help="Table 2 (max/median over seeds), Figure 2 (distributions) and failed-run rates from sweeps or train runs",
        description="Tables (markdown, CSV) and a plot (PNG) from the runs of `rxf sweep` and `rxf train`.",
    )
    report.add_argument(
        "--runs", required=True, nargs="+", metavar="DIR",
        help="sweep output_dirs (holding records/), rxf train output_dirs (holding metrics.json), or folders of them",
    )
    report.add_argument("--output-dir", help="where the report goes (default: <runs>/report for one folder, ./report for several)")
    report.add_argument("--phase", default="seeds", choices=["seeds", "search"], help="which runs to report (default: %(default)s)")
    report.add_argument("--metric", action="append", metavar="TASK=METRIC", help="metric reported for a task (repeatable)")
    report.add_argument(
        "--label", action="append", metavar="ROW=NAME",
        help="name shown for a method or sweep variant in tables and plot (repeatable; records keep the row's name)",
    )
    report.add_argument(
        "--learned", action="append", metavar="TASK=SCORE",
        help="the score (the task's reported metric, e.g. 0.62) at which a task counts as learned: where Standard's "
             "median is below it, the task's verdict in comparison.md is 'not at this scale' (repeatable)",
    )
    report.set_defaults(handler=cmd_report)
