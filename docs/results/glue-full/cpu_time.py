"""CPU time the sweep has used so far, from the records' wall times (one thread per run) and the recipe checks.

    python docs/results/glue-full/cpu_time.py

A lower bound: a run resumed after a restart records only the time since the restart.
"""

import collections
import json
from pathlib import Path

here = Path(__file__).parent
runs = collections.Counter()
for path in (here / "cpu" / "records").glob("*.json"):
    record = json.loads(path.read_text())
    runs[record["task"]] += record.get("wall_time_s", 0.0)
recipe = sum(json.loads(path.read_text())["train_runtime_s"] for path in (here / "recipe").glob("*-lr*.json"))
for task, seconds in sorted(runs.items()):
    print(f"{task}: {seconds / 3600:.1f} CPU-hours of sweep runs")
print(f"sweep runs: {sum(runs.values()) / 3600:.1f} CPU-hours; recipe checks: {recipe / 3600:.1f}")
