#!/usr/bin/env bash
# The sweep of issue 16 on this 2-core CPU, in the order that answers most soonest: one process per
# task pair, each running its first task's Standard seeds (does the model learn the task?), then the
# other rows of cpu.yaml (search, then seeds, methods taking turns), then that task's dropout-0 rows
# (cpu-nodrop-<task>.yaml), then its second task. Resumable: every finished
# run is a record in docs/results/glue-full/cpu/records/, so the same command continues where it
# stopped (a killed run resumes from its last epoch while its uncommitted checkpoints in cpu/runs/
# survive; on a fresh checkout it starts again).
#
#   bash docs/results/glue-full/run_sweep.sh mrpc cola > runs/logs/sweep-mrpc-cola.log 2>&1 & # process 1
#   bash docs/results/glue-full/run_sweep.sh stsb rte > runs/logs/sweep-stsb-rte.log 2>&1 &   # process 2
# (STS-B before RTE: Standard does not reach RTE's bar, so the tasks it learns come first.)
#   .venv/bin/rxf report --runs docs/results/glue-full/cpu --output-dir docs/results/glue-full
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ -x .venv/bin/rxf ] || make install  # a fresh checkout (each session may start on one) has no .venv yet
[ -d runs/glue-holdout ] || .venv/bin/python docs/results/glue-full/make_holdout.py
export OMP_NUM_THREADS=1
for task in "$@"; do
  # The learning rate must have been chosen on held-out data first (run_recipe_check.sh, then set in
  # configs/glue-full/$task.yaml and listed in chosen_lr.txt): until then, run the check and stop.
  if ! grep -q "^$task " docs/results/glue-full/recipe/chosen_lr.txt 2>/dev/null; then
    bash docs/results/glue-full/run_recipe_check.sh "$task"
    echo "run_sweep.sh: recipe check of $task done; set its learning rate in configs/glue-full/$task.yaml and" \
         "docs/results/glue-full/recipe/chosen_lr.txt, then run this again" >&2
    exit 0
  fi
  # Standard's seeds first: whether the model learns the task at all decides what the rest can show.
  nice -n 10 .venv/bin/rxf sweep --config configs/glue-full/cpu.yaml --tasks "$task" --methods standard
  nice -n 10 .venv/bin/rxf sweep --config configs/glue-full/cpu.yaml --tasks "$task"
  case "$task" in
    rte|mrpc) nice -n 10 .venv/bin/rxf sweep --config "configs/glue-full/cpu-nodrop-$task.yaml" --tasks "$task" ;;
  esac
done
