"""The ``rxf`` command line: one verb per module in rxf/commands/.

    rxf train [--config FILE] [--method r3f] [--lambda 1.0] ... [--set key=value ...]
    rxf methods

A verb's mistakes (RxfError) end with a one-line message and exit status 2, never a traceback.
SIGTERM (``kill``, SLURM's time limit, a launcher stopping its ranks) stops a verb as Ctrl-C does, so
what it holds is released on the way out (rxf.rundir: the lock, an earlier run kept aside by --overwrite).
To add a verb, write ``rxf/commands/<verb>.py`` with ``add_parser(subparsers)`` and list it in
COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from rxf.errors import RxfError

COMMANDS = [
    "rxf.commands.train",
    "rxf.commands.methods",
    "rxf.commands.summarize",
    "rxf.commands.probe",
    "rxf.commands.sweep",
    "rxf.commands.report",
    "rxf.commands.xnli",
    "rxf.commands.sft",
    "rxf.commands.predict",
    "rxf.commands.evaluate",
]


def build_parser() -> argparse.ArgumentParser:
    from rxf.commands.options import OneLineErrorParser

    parser = OneLineErrorParser(prog="rxf", description="Robust fine-tuning: R3F, R4F and their baselines.")
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(module).add_parser(commands)
    return parser


def quiet_libraries() -> None:
    """Keep the terminal for rxf's own progress bar and messages: no per-file loading bars."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    for handler in logging.getLogger("datasets").handlers:
        if _below_error not in handler.filters:
            handler.addFilter(_below_error)


def _below_error(record: logging.LogRecord) -> bool:
    """datasets logs a file it cannot parse, then raises: rxf reports the exception, in one line."""
    return record.levelno < logging.ERROR


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, as Ctrl-C's KeyboardInterrupt is."""


@contextmanager
def sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """Inside, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt), so that ``finally`` and ``with`` blocks
    run on the way out; the earlier handler is back afterwards. (Only the main thread may set one.)"""

    def stop(signum, frame):
        raise Terminated()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    earlier = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, earlier)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        with sigterm_stops_like_ctrl_c():
            return args.handler(args)
    except RxfError as error:
        print(f"rxf: error: {' '.join(str(error).splitlines())}", file=sys.stderr)  # one line, whatever the message
        return 2
    except Terminated:
        print("rxf: stopped (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("rxf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
