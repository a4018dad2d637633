"""Shared helpers of the fuzz suite (issue 13): run the CLI on bad input, check the failure is clean.

A clean failure is exit status 2 and exactly one line on stderr that names the problem, with no
traceback; for fault and ownership cases, what existed before is byte-for-byte intact
(:func:`snapshot` before, compare after).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tiny_glue import tiny_bert_dir


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(args: list[str], cwd: Path | None = None, timeout: float = 300) -> CliResult:
    """``rxf ARGS`` in a fresh process (offline), as a user runs it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "rxf.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def run_in_process(capfd):
    """``rxf ARGS`` through ``rxf.cli.main`` in this process (no start-up cost); stderr captured at the
    file-descriptor level, and an escaped exception reported as the traceback a user would see (exit 1)."""

    def run(args: list) -> CliResult:
        import traceback

        from rxf.cli import main

        capfd.readouterr()
        escaped = ""
        try:
            code = main([str(a) for a in args])
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        except Exception:  # noqa: BLE001
            code, escaped = 1, traceback.format_exc()
        out, err = capfd.readouterr()
        return CliResult(code, out, err + escaped)

    return run


def assert_clean_failure(result: CliResult, *fragments: str) -> str:
    """Exit 2, one line on stderr, no traceback, and every fragment (case-insensitive) in that line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-3000:]}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr[-3000:]}"
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, to check that a failure left them untouched."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A 1-layer BERT with a word-level vocabulary, saved to disk (any head is new at load time)."""
    return tiny_bert_dir(tmp_path_factory.mktemp("fuzz") / "model")


@pytest.fixture
def tiny_csv(tmp_path) -> Path:
    """A 40-row two-class CSV whose label follows a word."""
    rows = ["text,label"] + [f"the cat sat {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}" for i in range(40)]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def mount_point(tmp_path):
    """A folder to mount a file system on; skips where this machine does not allow mounting."""
    point = tmp_path / "mnt"
    point.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    subprocess.run(["umount", str(point)], check=True)
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True)
