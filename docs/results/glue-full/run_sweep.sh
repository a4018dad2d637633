#!/usr/bin/env bash
# The sweep of issue 16 on this 2-core CPU, in the order that answers most soonest. Each argument is
# a task, or task:part to run one part of it:
#   task:main    the rows of cpu.yaml: Standard's seeds first (does the model learn the task?), then
#                the search and seeds of the regularised rows, methods taking turns
#   task:nodrop  the dropout-0 rows of cpu-nodrop-<task>.yaml (RTE and MRPC only)
#   task:sn      Standard with R4F's spectrally normalised head, cpu-sn-<task>.yaml (STS-B only)
#   task:PART    in general, the rows of configs/glue-full/cpu-PART-<task>.yaml
#   task         all of them, main first
# Resumable: every finished run is a record in docs/results/glue-full/cpu/records/, so the same
# command continues where it stopped (a killed run resumes from its last epoch while its
# uncommitted checkpoints in cpu/runs/ survive; on a fresh checkout it starts again). Two processes
# may work on the same part: a seed run the other one is training is left to it (rxf sweep), and
# a search trial it is training is come back to (rxf.experiments.sweep). Both must run code from
# commit 59de650 or later: an older process stops at the first run the other one holds.
#
#   bash docs/results/glue-full/run_sweep.sh mrpc:main cola stsb:sn mrpc:nodrop rte:nodrop > runs/logs/sweep-1.log 2>&1 &
#   bash docs/results/glue-full/run_sweep.sh stsb:main rte:main rte:nodrop > runs/logs/sweep-2.log 2>&1 &
# (The split balances the two processes: RTE's runs are the longest, so its dropout-0 rows go to
# the process with the shorter tasks, and the other joins in on them when its own parts are done.
# CoLA's main rows come before MRPC's dropout-0 rows: the issue's four-task table first, the
# noise-or-dropout question second.)
#   .venv/bin/rxf report --runs docs/results/glue-full/cpu --output-dir docs/results/glue-full
set -euo pipefail
cd "$(dirname "$0")/../../.."
[ -x .venv/bin/rxf ] || make install  # a fresh checkout (each session may start on one) has no .venv yet
[ -d runs/glue-holdout ] || .venv/bin/python docs/results/glue-full/make_holdout.py
export OMP_NUM_THREADS=1
# Run a copy of the code taken now: a session goes on editing src/ for hours while the sweep runs,
# and a module first imported at a run's end (the dev report) from edited code can fail against the
# ones loaded at its start (it did once, in the fourteenth session). The copy goes when this exits.
code="runs/sweep-code/$$"
rm -rf "$code" && mkdir -p "$code" && cp -r src/rxf "$code/"
export PYTHONPATH="$PWD/$code${PYTHONPATH:+:$PYTHONPATH}"
trap 'rm -rf "$code"' EXIT
# The parts each argument names, checked before anything runs.
for arg in "$@"; do
  task=${arg%%:*}; part=${arg#"$task"}; part=${part#:}
  if [ -n "$part" ] && [ "$part" != main ] && [ ! -f "configs/glue-full/cpu-$part-$task.yaml" ]; then
    echo "run_sweep.sh: $arg: $task has no rows '$part' (configs/glue-full/cpu-$part-$task.yaml);" \
         "a part is main or the PART of a configs/glue-full/cpu-PART-$task.yaml" >&2
    exit 2
  fi
done
for arg in "$@"; do
  task=${arg%%:*}; part=${arg#"$task"}; part=${part#:}
  # The learning rate must have been chosen on held-out data first (run_recipe_check.sh, then set in
  # configs/glue-full/$task.yaml and listed in chosen_lr.txt): until then, run the check and stop.
  if ! grep -q "^$task " docs/results/glue-full/recipe/chosen_lr.txt 2>/dev/null; then
    bash docs/results/glue-full/run_recipe_check.sh "$task"
    echo "run_sweep.sh: recipe check of $task done; set its learning rate in configs/glue-full/$task.yaml and" \
         "docs/results/glue-full/recipe/chosen_lr.txt, then run this again" >&2
    exit 0
  fi
  if [ -z "$part" ] || [ "$part" = main ]; then
    # Standard's seeds first: whether the model learns the task at all decides what the rest can show.
    nice -n 10 .venv/bin/rxf sweep --config configs/glue-full/cpu.yaml --tasks "$task" --methods standard
    nice -n 10 .venv/bin/rxf sweep --config configs/glue-full/cpu.yaml --tasks "$task"
  fi
  if [ -z "$part" ]; then
    extras=(configs/glue-full/cpu-*-"$task".yaml)  # every extra part of the task
  elif [ "$part" != main ]; then
    extras=("configs/glue-full/cpu-$part-$task.yaml")
  else
    extras=()
  fi
  for config in "${extras[@]}"; do
    [ -f "$config" ] || continue  # an unmatched glob (a task with no extra rows) stays as written
    nice -n 10 .venv/bin/rxf sweep --config "$config" --tasks "$task"
  done
done
