"""rxf.experiments.report: Table 2 (max/median over seeds), Figure 2, failed-run rate and std from records."""

from __future__ import annotations

import csv
import statistics

import pytest

from rxf.errors import RxfError
from rxf.experiments.report import ReportConfig, make_report
from tiny_glue import fake_record, write_records

# Best-over-training score of each seed's run (the history below peaks mid-run for some).
RTE_SCORES = {"standard++": [0.60, 0.55, 0.527, 0.62, 0.58], "r3f": [0.63, 0.61, 0.64, 0.50, 0.66]}
RTE_BASELINE = 0.527


def rte_records() -> list[dict]:
    records = []
    for method, scores in RTE_SCORES.items():
        for seed, best in enumerate(scores, start=1):
            records.append(fake_record("glue/rte", method, seed, [best - 0.05, best, best - 0.02], RTE_BASELINE))
    # a search run must not count
    records.append(fake_record("glue/rte", "r3f", 0, [0.99], RTE_BASELINE, phase="search"))
    return records


def mrpc_records() -> list[dict]:
    # MRPC's main metric is (acc + F1)/2, but the paper's Table 2 reports accuracy.
    return [
        fake_record("glue/mrpc", "r3f", seed, [0.7 + seed / 100], 0.684, metric="f1_accuracy",
                    extra={"accuracy": [0.68 + seed / 100]})
        for seed in (1, 2, 3)
    ]


def read_csv(path) -> dict[tuple[str, str], dict[str, str]]:
    with open(path) as f:
        return {(row["task"], row["method"]): row for row in csv.DictReader(f)}


def test_table2_max_median_std_and_failed_runs(tmp_path):
    runs = write_records(tmp_path / "sweep", rte_records() + mrpc_records())
    result = make_report(ReportConfig(runs=str(runs), output_dir=str(tmp_path / "report")))

    rows = read_csv(result["paths"]["table2.csv"])
    for method, scores in RTE_SCORES.items():
        row = rows[("glue/rte", method)]
        assert int(row["runs"]) == 5
        assert float(row["max"]) == pytest.approx(max(scores))
        assert float(row["median"]) == pytest.approx(statistics.median(scores))
        assert float(row["std"]) == pytest.approx(statistics.stdev(scores))
        # at or below the majority-class score: 0.527 (equal) for standard++, 0.50 for r3f
        assert int(row["failed"]) == sum(s <= RTE_BASELINE for s in scores) == 1
    mrpc = rows[("glue/mrpc", "r3f")]
    assert mrpc["metric"] == "accuracy" and float(mrpc["max"]) == pytest.approx(0.71)

    table = (tmp_path / "report" / "table2.md").read_text()
    assert "Max over seeds" in table and "Median over seeds" in table
    assert "| RTE Acc | MRPC Acc |" in table
    assert "| R3F | 66.0 (5) | 71.0 (3) |" in table  # max
    assert "| R3F | 63.0 (5) | 70.0 (3) |" in table  # median
    assert "| STD++ | 62.0 (5) | – |" in table
    assert table.index("STD++") < table.index("R3F")  # the paper's row order
    progress = (tmp_path / "report" / "progress.md").read_text()
    assert "| RTE | R3F | 1 | 5 | 1, 2, 3, 4, 5 |" in progress and "| MRPC | STD++ |" not in progress
    stability = (tmp_path / "report" / "stability.md").read_text()
    r3f_std = 100 * statistics.stdev(RTE_SCORES["r3f"])
    assert f"| R3F | {r3f_std:.1f} | 1.0 | 1/8 | 12 % |" in stability  # MRPC: 0.69, 0.70, 0.71, none failed
    assert "| STD++ |" in stability and "1/5 | 20 %" in stability


def test_figure2_is_a_png_with_one_panel_per_task(tmp_path):
    import matplotlib.image

    runs = write_records(tmp_path / "sweep", rte_records() + mrpc_records())
    result = make_report(ReportConfig(runs=str(runs)))
    png = result["paths"]["figure2.png"]
    assert png.startswith(str(runs / "report"))
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > height  # two panels side by side


def test_report_of_the_search_phase_and_metric_override(tmp_path):
    runs = write_records(tmp_path / "sweep", rte_records() + mrpc_records())
    result = make_report(ReportConfig(runs=str(runs), phase="search", metrics={"glue/rte": "accuracy"}))
    assert [(r["task"], r["method"], r["max"]) for r in result["rows"]] == [("glue/rte", "r3f", 0.99)]
    assert "Max over search trials" in (runs / "report" / "table2.md").read_text()
    result = make_report(ReportConfig(runs=str(runs), metrics={"glue/mrpc": "f1_accuracy"}))
    assert {r["task"]: r["max"] for r in result["rows"]}["glue/mrpc"] == pytest.approx(0.73)


def test_report_errors_name_the_problem(tmp_path):
    with pytest.raises(RxfError, match="does not exist"):
        make_report(ReportConfig(runs=str(tmp_path / "nowhere")))
    (tmp_path / "empty" / "records").mkdir(parents=True)
    with pytest.raises(RxfError, match="no run records"):
        make_report(ReportConfig(runs=str(tmp_path / "empty")))
    only_search = write_records(tmp_path / "search", [fake_record("glue/rte", "r3f", 0, [0.6], 0.5, phase="search")])
    with pytest.raises(RxfError, match="--phase search"):
        make_report(ReportConfig(runs=str(only_search)))
    runs = write_records(tmp_path / "sweep", rte_records())
    with pytest.raises(RxfError, match="no 'f1'"):
        make_report(ReportConfig(runs=str(runs), metrics={"glue/rte": "f1"}))
    (runs / "records" / "broken.json").write_text("{not json")
    with pytest.raises(RxfError, match="broken.json"):
        make_report(ReportConfig(runs=str(runs)))


def _cell(method, scores, task="glue/rte"):
    from rxf.experiments.report import Cell

    return Cell(task, method, "accuracy", scores, 0.5)


def test_difference_to_standard_with_a_bootstrap_interval():
    from rxf.experiments.report import mean_difference

    standard = _cell("standard", [0.60, 0.61, 0.62, 0.59, 0.60])
    clearly_better = mean_difference(_cell("r3f", [0.70, 0.71, 0.72, 0.69, 0.70]), standard)
    assert clearly_better["diff_mean"] == pytest.approx(0.10)
    assert 0 < clearly_better["diff_ci_low"] <= 0.10 <= clearly_better["diff_ci_high"]
    assert clearly_better["verdict"] == "better"
    noisy = mean_difference(_cell("r4f", [0.50, 0.70, 0.55, 0.66, 0.62]), standard)
    assert noisy["diff_ci_low"] < 0 < noisy["diff_ci_high"] and noisy["verdict"] == "within seed noise"
    worse = mean_difference(_cell("rdrop", [0.50, 0.51, 0.52, 0.49, 0.50]), standard)
    assert worse["verdict"] == "worse" and worse["diff_ci_high"] < 0
    assert mean_difference(_cell("r3f", [0.7]), standard)["verdict"] == "too few runs"


def test_verdict_needs_welch_t_as_well_as_the_bootstrap():
    """At 5 seeds the percentile bootstrap undercovers (~88 % at nominal 95 %): a difference it alone
    calls significant is only "within seed noise" unless Welch's t interval excludes 0 too."""
    from rxf.experiments.report import mean_difference

    standard = _cell("standard", [0.60, 0.61, 0.62, 0.59, 0.60])
    borderline = mean_difference(_cell("r3f", [0.60, 0.65, 0.63, 0.62, 0.62]), standard)
    assert borderline["diff_ci_low"] > 0  # the bootstrap alone would say "better"...
    assert borderline["welch_ci_low"] < 0 < borderline["welch_ci_high"]  # ...Welch's t does not
    assert borderline["verdict"] == "within seed noise"
    # Welch's interval is the t interval with Welch–Satterthwaite degrees of freedom
    a, b = [0.60, 0.65, 0.63, 0.62, 0.62], [0.60, 0.61, 0.62, 0.59, 0.60]
    va, vb = statistics.variance(a) / 5, statistics.variance(b) / 5
    df = (va + vb) ** 2 / (va**2 / 4 + vb**2 / 4)
    from scipy.stats import t

    half = t.ppf(0.975, df) * (va + vb) ** 0.5
    assert borderline["welch_ci_low"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b) - half)
    assert borderline["welch_ci_high"] == pytest.approx(statistics.fmean(a) - statistics.fmean(b) + half)
    # rows without spread: both intervals collapse to the difference
    flat = mean_difference(_cell("r3f", [0.7] * 5), _cell("standard", [0.6] * 5))
    assert flat["welch_ci_low"] == flat["diff_ci_low"] == pytest.approx(0.1) and flat["verdict"] == "better"


def test_no_verdict_from_fewer_than_five_seeds():
    """Two seeds resample to three possible means: an interval that excludes 0 says nothing yet."""
    from rxf.experiments.report import mean_difference

    standard = _cell("standard", [0.60, 0.61, 0.62, 0.59, 0.60])
    two_seeds = mean_difference(_cell("r4f", [0.70, 0.71]), standard)
    assert two_seeds["diff_ci_low"] > 0  # the interval is still shown...
    assert two_seeds["verdict"] == "too few runs"  # ...but it decides nothing
    four_seeds = mean_difference(_cell("r4f", [0.70, 0.71, 0.72, 0.69]), standard)
    assert four_seeds["diff_ci_low"] > 0 and four_seeds["verdict"] == "too few runs"


def test_holm_adjustment_by_hand():
    from rxf.experiments.report import holm_adjusted

    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → kept non-decreasing: 0.06
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjusted([]) == []


def test_comparisons_adjust_welch_p_over_the_rows_with_a_verdict():
    """A p that passes alone can fail once the number of rows compared is counted."""
    from scipy.stats import ttest_ind

    from rxf.experiments.report import Cell, comparisons

    standard = [0.60, 0.61, 0.62, 0.59, 0.60]
    rows = {
        "r3f": [0.60, 0.66, 0.64, 0.62, 0.65],  # p ≈ 0.03 alone
        "r4f": [0.58, 0.63, 0.60, 0.61, 0.62],
        "rdrop": [0.59, 0.62, 0.61, 0.60, 0.63],
        "sn-head": [0.70, 0.71],  # too few runs: outside the family
    }
    cells = [Cell("glue/rte", "standard", "accuracy", standard, 0.5)]
    cells += [Cell("glue/rte", method, "accuracy", scores, 0.5) for method, scores in rows.items()]
    found = comparisons(cells)
    p = {m: ttest_ind(rows[m], standard, equal_var=False).pvalue for m in ("r3f", "r4f", "rdrop")}
    assert found[("glue/rte", "r3f")]["welch_p"] == pytest.approx(p["r3f"]) and p["r3f"] < 0.05
    smallest = min(p.values())
    assert smallest == p["r3f"] and found[("glue/rte", "r3f")]["holm_p"] == pytest.approx(3 * p["r3f"])
    assert 3 * p["r3f"] > 0.05
    assert found[("glue/rte", "sn-head")]["holm_p"] is None and found[("glue/rte", "sn-head")]["welch_p"] is not None


def test_a_tasks_verdict_counts_the_rows_compared_and_whether_the_task_was_learned():
    """yes only past Holm; open while a row has too few runs; not at this scale below the learned score; else no."""
    from rxf.experiments.report import Cell, comparisons, task_verdicts

    standard = [0.60, 0.61, 0.62, 0.59, 0.60]
    far = [0.70, 0.71, 0.72, 0.69, 0.70]  # better by a margin that survives any correction here
    near = [0.60, 0.66, 0.64, 0.62, 0.65]  # better by both intervals alone, p ≈ 0.03
    flat = [0.59, 0.62, 0.61, 0.60, 0.61]

    def verdict(rows: dict[str, list[float]], learned: dict[str, float] | None = None) -> dict:
        cells = [Cell("glue/rte", "standard", "accuracy", standard, 0.5)]
        cells += [Cell("glue/rte", method, "accuracy", scores, 0.5) for method, scores in rows.items()]
        labels = {"standard": "STD", "r3f": "R3F", "nodrop": "R3F, dropout 0"}
        [only] = task_verdicts(cells, comparisons(cells), learned or {}, labels=labels)
        return only

    assert verdict({"r3f": far, "r4f": flat})["verdict"] == "yes: R3F"
    passed_alone = verdict({"r3f": near, "r4f": flat, "rdrop": flat})  # Holm: 3 × 0.03 > 0.05
    assert passed_alone["verdict"] == "no"
    assert passed_alone["notes"][0].startswith("R3F better by both intervals, not after Holm (p 0.")
    assert verdict({"r3f": flat, "nodrop": [0.7, 0.71]})["verdict"] == "open: too few runs in R3F, dropout 0"
    assert verdict({"r3f": flat}, {"glue/rte": 0.62}) == {
        "task": "glue/rte", "median": 0.60, "learned": 0.62, "verdict": "not at this scale", "notes": [],
    }
    assert verdict({"r3f": flat}, {"glue/rte": 0.60})["verdict"] == "no"  # the median at the bar: learned
    below = verdict({"r3f": far}, {"glue/rte": 0.62})  # a row that wins is a yes even so, said with the caveat
    assert below["verdict"] == "yes: R3F" and below["notes"] == ["STD below the learned score"]
    open_below = verdict({"r3f": flat, "nodrop": [0.7]}, {"glue/rte": 0.62})
    assert open_below["verdict"].startswith("open") and "at best not at this scale" in open_below["notes"][0]
    provisional = verdict({"r3f": far, "nodrop": [0.7, 0.71]})
    assert provisional["verdict"] == "yes: R3F" and provisional["notes"] == ["provisional: 1 row(s) of the report still have too few runs"]
    # ... an open row in another task counts too: it joins the same Holm family
    cells = [Cell(task, method, "accuracy", scores, 0.5) for task in ("glue/rte", "glue/mrpc")
             for method, scores in (("standard", standard), ("r3f", far if task == "glue/rte" else far[:2]))]
    rte = task_verdicts(cells, comparisons(cells), {})[0]
    assert rte["verdict"] == "yes: R3F" and rte["notes"] == ["provisional: 1 row(s) of the report still have too few runs"]
    # Too few runs of Standard's: every row waits for it, whatever its own count
    cells = [Cell("glue/rte", "standard", "accuracy", standard[:3], 0.5), Cell("glue/rte", "r3f", "accuracy", far, 0.5),
             Cell("glue/rte", "r4f", "accuracy", far[:2], 0.5)]
    found = task_verdicts(cells, comparisons(cells), {}, labels={"standard": "STD"})
    assert found[0]["verdict"] == "open: too few runs in STD / r4f"
    # A task with Standard alone compares nothing: no verdict (not a "no")
    cells.append(Cell("glue/mrpc", "standard", "accuracy", standard, 0.5))
    assert [v["task"] for v in task_verdicts(cells, comparisons(cells), {})] == ["glue/rte"]


def test_the_report_gives_each_tasks_verdict(tmp_path):
    records = [fake_record("glue/rte", "standard", seed, [s], RTE_BASELINE) for seed, s in enumerate([0.6, 0.61, 0.59, 0.6, 0.6], 1)]
    records += [fake_record("glue/rte", "r3f", seed, [s], RTE_BASELINE) for seed, s in enumerate([0.59, 0.62, 0.6, 0.61, 0.6], 1)]
    write_records(tmp_path / "runs", records)
    make_report(ReportConfig(runs=str(tmp_path / "runs"), output_dir=str(tmp_path / "out"), learned={"glue/rte": 0.62}))
    assert "| RTE | 60.0 | 62.0 (not met) | not at this scale | – |" in (tmp_path / "out" / "comparison.md").read_text()
    with pytest.raises(RxfError, match="--learned glue/rte=62: the score must be a number on the metric's own scale"):
        make_report(ReportConfig(runs=str(tmp_path / "runs"), learned={"glue/rte": 62}))
    write_records(tmp_path / "runs", [fake_record("glue/mrpc", "standard", 1, [0.8], 0.68, metric="accuracy")])
    with pytest.raises(RxfError, match="--learned glue/mrpc=0.8: glue/mrpc has no 'standard' row and another row"):
        make_report(ReportConfig(runs=str(tmp_path / "runs"), learned={"glue/mrpc": 0.8}))  # Standard alone: no verdict
    with pytest.raises(RxfError, match="--learned qualifies the per-task verdicts of the seed runs"):
        make_report(ReportConfig(runs=str(tmp_path / "runs"), phase="search", learned={"glue/rte": 0.6}))
    # Search trials differ in hyperparameters, not seeds: no per-task verdict
    write_records(tmp_path / "search", [fake_record("glue/rte", m, trial, [s], RTE_BASELINE, phase="search")
                                        for m in ("standard", "r3f") for trial, s in enumerate([0.6, 0.61, 0.62, 0.6, 0.61])])
    make_report(ReportConfig(runs=str(tmp_path / "search"), output_dir=str(tmp_path / "out-search"), phase="search"))
    text = (tmp_path / "out-search" / "comparison.md").read_text()
    assert "| RTE | R3F | 5 |" in text and "Per task" not in text and "intervals over search trials" in text


def test_report_writes_the_comparison_and_failed_rates(tmp_path):
    records = [fake_record("glue/rte", "standard", seed, [s], RTE_BASELINE) for seed, s in enumerate([0.6, 0.61, 0.5, 0.62, 0.6], 1)]
    records += [fake_record("glue/rte", "r3f", seed, [s], RTE_BASELINE) for seed, s in enumerate([0.7, 0.71, 0.72, 0.69, 0.7], 1)]
    write_records(tmp_path / "runs", records)
    result = make_report(ReportConfig(runs=str(tmp_path / "runs"), output_dir=str(tmp_path / "out")))
    text = (tmp_path / "out" / "comparison.md").read_text()
    assert "| RTE | R3F | 5 |" in text and "better" in text
    rows = read_csv(result["paths"]["table2.csv"])
    assert float(rows[("glue/rte", "standard")]["failed_rate"]) == pytest.approx(0.2)  # 0.5 <= majority 0.527
    r3f = rows[("glue/rte", "r3f")]
    assert r3f["reference"] == "standard" and float(r3f["diff_mean"]) == pytest.approx(0.704 - 0.586)
    assert float(r3f["diff_ci_low"]) > 0 and float(r3f["welch_ci_low"]) > 0 and r3f["verdict"] == "better"
    assert "95 % Welch t" in text
    # one comparison with a verdict: Holm leaves its p as it is
    assert float(r3f["holm_p"]) == pytest.approx(float(r3f["welch_p"])) and float(r3f["welch_p"]) < 0.01
    assert "| better | 0.0047 | 0.0047 | 0 % |" in text and "over the 1 comparisons with a verdict" in text


def _with_curve(record: dict, divergences: list[float], task_losses: list[float], lam: float) -> dict:
    """Two epochs of training logs, two entries each: loss = task loss + λ·divergence."""
    record["metrics"]["loss_curve"] = [
        {"loss": t + lam * d, "task_loss": t, "r3f_divergence": d, "learning_rate": 1e-5, "grad_norm": 1.0,
         "epoch": epoch, "step": 10 * (i + 1), "wall_time_s": float(i)}
        for i, (d, t, epoch) in enumerate(zip(divergences, task_losses, [0.5, 1.0, 1.5, 2.0]))
    ]
    return record


def test_regularizer_table_sizes_each_methods_term(tmp_path):
    records = [
        # R3F, λ 1: divergence 0.01, 0.02 in epoch 1, 0.04, 0.06 in epoch 2; task loss 0.2 then 0.06
        _with_curve(fake_record("glue/rte", "r3f", 1, [0.6], RTE_BASELINE), [0.01, 0.02, 0.04, 0.06], [0.2, 0.2, 0.06, 0.06], 1.0),
        _with_curve(fake_record("glue/rte", "r3f", 2, [0.6], RTE_BASELINE), [0.01, 0.02, 0.02, 0.02], [0.2, 0.2, 0.06, 0.06], 1.0),
        fake_record("glue/rte", "standard", 1, [0.6], RTE_BASELINE),  # no loss curve: no row
        # a search run's curve does not count
        _with_curve(fake_record("glue/rte", "r4f", 0, [0.6], RTE_BASELINE, phase="search"), [9.0] * 4, [0.1] * 4, 1.0),
    ]
    write_records(tmp_path / "runs", records)
    make_report(ReportConfig(runs=str(tmp_path / "runs"), output_dir=str(tmp_path / "out")))
    rows = [line for line in (tmp_path / "out" / "regularizers.md").read_text().splitlines() if line.startswith("| RTE")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[:4] == ["RTE", "R3F", "r3f_divergence", "2"]
    assert float(cells[4]) == pytest.approx(statistics.fmean([0.0325, 0.0175]), rel=1e-3)  # mean over each run
    assert float(cells[5]) == pytest.approx(statistics.fmean([0.05, 0.02]), rel=1e-3)  # last epoch
    assert cells[6] == "0.02–0.05"
    # share in the last epoch: seed 1 (0.04/0.10 + 0.06/0.12)/2 = 0.45, seed 2 0.02/0.08 = 0.25
    assert cells[7] == "35 %"


def test_regularizer_table_without_regularized_runs(tmp_path):
    write_records(tmp_path / "runs", [fake_record("glue/rte", "standard", 1, [0.6], RTE_BASELINE)])
    make_report(ReportConfig(runs=str(tmp_path / "runs"), output_dir=str(tmp_path / "out")))
    assert (tmp_path / "out" / "regularizers.md").read_text().startswith("No seed run logged a regulariser")
