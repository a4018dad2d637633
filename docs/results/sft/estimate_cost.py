"""CPU time per training step of the runs in run.sh, measured on a few steps, to size the experiment.

    nice python docs/results/sft/estimate_cost.py --data-dir ../shared/data/summarization --steps 3

Runs `rxf sft`'s recipe (SmolLM2-135M-Instruct, LoRA r 16, batch 4, max_length 512, SAMSum
chats) for --steps steps per method and reads the process's CPU time (user + system) around
each optimizer step with a TrainerCallback; the first step (warm-up) is left out. CPU time,
not wall time: on a shared machine it does not count the time other processes hold the cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from transformers import TrainerCallback

from rxf.sft import SFTConfig, run_sft

METHODS = {
    "standard": {},
    "neftune": {"alpha": 5.0},
    "r3f": {"lambda_": 0.1, "sigma": 1e-5, "gradient_mode": "both"},
    "rdrop": {"alpha": 0.1},
}


class StepClock(TrainerCallback):
    def __init__(self) -> None:
        self.cpu: list[float] = []

    def on_step_begin(self, args, state, control, **kwargs):
        self.started = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.cpu.append(time.process_time() - self.started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false",
                        help="as run.sh: keep activations instead of recomputing them")
    args = parser.parse_args()
    results = {}
    # The README's numbers were measured with gradient checkpointing (TRL's default); run.sh turns it off.
    for method in args.methods.split(","):
        clock = StepClock()
        with tempfile.TemporaryDirectory() as out:
            config = SFTConfig.from_dict({
                "data_dir": args.data_dir, "lora_r": 16, "batch_size": 4, "max_length": 512, "max_steps": args.steps,
                "max_eval_samples": 4, "keep_checkpoints": 0, "method": method, "method_options": METHODS[method],
                "progress_bar": False, "output_dir": out, "gradient_checkpointing": args.gradient_checkpointing,
            })
            run_sft(config, extra_callbacks=[clock])
        results[method] = {"cpu_seconds_per_step": clock.cpu[1:] or clock.cpu}
        print(method, results[method], flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
