#!/usr/bin/env bash
# Choose Standard's learning rate on the held-out 10 % of each training set (never the dev set):
# every task at lr 5e-5 and 1e-4 (or the rates in LRS) with the configs/glue-full recipe, one seed
# (search_seed 0), the best per-epoch evaluation counts. Each run's metrics.json is copied to
# docs/results/glue-full/recipe/. Resumable: a finished run is skipped, a killed one resumes.
#
#   python docs/results/glue-full/make_holdout.py                       # runs/glue-holdout
#   bash docs/results/glue-full/run_recipe_check.sh rte stsb &          # process 1
#   bash docs/results/glue-full/run_recipe_check.sh mrpc cola &         # process 2
#   LRS=2e-5 bash docs/results/glue-full/run_recipe_check.sh rte          # a best rate at the edge: one step further
set -euo pipefail
cd "$(dirname "$0")/../../.."
mkdir -p docs/results/glue-full/recipe
for task in "$@"; do
  for lr in ${LRS:-5e-5 1e-4}; do
    out=runs/glue-full-recipe/$task-lr$lr
    record=docs/results/glue-full/recipe/$task-lr$lr.json
    [ -f "$record" ] && continue
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/rxf train --config configs/glue-full/$task.yaml \
      --data-dir runs/glue-holdout --lr $lr --seed 0 --output-dir "$out" --no-progress \
      --set save_model=true --set keep_checkpoints=1
    cp "$out/metrics.json" "$record"
  done
done
