"""`rxf report` on hand-made run records: files written, numbers printed, mistakes exit 2."""

from __future__ import annotations

from rxf.cli import main
from tiny_glue import fake_record, write_records


def test_report_prints_and_writes_the_tables(tmp_path, capsys):
    records = [fake_record("glue/cola", method, seed, [score], 0.0, metric="mcc")
               for method, scores in {"r3f": [0.30, 0.35, 0.0], "smart": [0.25, 0.33, 0.31]}.items()
               for seed, score in enumerate(scores, start=1)]
    runs = write_records(tmp_path / "sweep", records)
    assert main(["report", "--runs", str(runs)]) == 0
    printed = capsys.readouterr().out
    assert "| SMART | 33.0 (3) |" in printed and "| R3F | 35.0 (3) |" in printed  # max
    assert "| R3F | 30.0 (3) |" in printed  # median
    assert "| R3F | 18.9 | 1/3 | 33 % |" in printed  # std ×100 of (0.30, 0.35, 0.0); the 0.0 run failed
    assert (runs / "report" / "figure2.png").is_file()


def test_report_mistakes_exit_2(tmp_path, capsys):
    assert main(["report", "--runs", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
    runs = write_records(tmp_path / "sweep", [fake_record("glue/rte", "r3f", 1, [0.6], 0.5)])
    assert main(["report", "--runs", str(runs), "--metric", "glue/rte"]) == 2
    assert "task=metric" in capsys.readouterr().err
    assert main(["report", "--runs", str(runs), "--metric", "glue/rte=mcc"]) == 2
    assert "no 'mcc'" in capsys.readouterr().err
