"""`rxf report`: the paper's Table 2 and Figure 2 from sweep records or train runs (see rxf.experiments.report).

    rxf report --runs runs/glue-cpu-small --output-dir docs/results/glue
    rxf report --runs runs/rte-standard runs/rte-r3f --output-dir report   # `rxf train` outputs
    rxf report --runs runs/glue-cpu-small --metric glue/mrpc=f1     # another metric for a task
"""

from __future__ import annotations

import argparse

from rxf.errors import RxfError


def cmd_report(args: argparse.Namespace) -> int:
    from rxf.experiments.report import ReportConfig, make_report

    metrics = {}
    for item in args.metric or []:
        if "=" not in item:
            raise RxfError(f"--metric expects task=metric (e.g. glue/mrpc=f1), got {item!r}")
        task, metric = item.split("=", 1)
        metrics[task] = metric
    result = make_report(ReportConfig(runs=args.runs, output_dir=args.output_dir, phase=args.phase, metrics=metrics))
    print(open(result["paths"]["table2.md"]).read())
    print(open(result["paths"]["stability.md"]).read())
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
    report.set_defaults(handler=cmd_report)
