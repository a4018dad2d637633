"""Run rxf.train.run_training from a YAML config, optionally killing itself with SIGKILL.

    python resume_driver.py CONFIG                 # a normal run
    python resume_driver.py CONFIG step 10         # SIGKILL at the end of step 10
    python resume_driver.py CONFIG save 12         # SIGKILL in the middle of writing checkpoint-12
    python resume_driver.py CONFIG step 10 SIGINT  # the same with SIGINT (Ctrl-C): a KeyboardInterrupt

SIGKILL gives the process no chance to clean up: what is on disk is what a crash leaves. SIGINT
unwinds the stack (KeyboardInterrupt) through whatever was being written.
"""

import os
import signal
import sys

from transformers import TrainerCallback

from rxf.train import TrainConfig, run_training
from rxf.trainer import RxfTrainerMixin


SIGNAL = getattr(signal, sys.argv[4]) if len(sys.argv) > 4 else signal.SIGKILL
# A process started in the background by a non-interactive shell inherits SIGINT ignored, and
# Python then installs no KeyboardInterrupt handler: restore it, so Ctrl-C is what a terminal gives.
signal.signal(signal.SIGINT, signal.default_int_handler)


def die() -> None:
    os.kill(os.getpid(), SIGNAL)


class KillAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            die()


config = TrainConfig.from_yaml(sys.argv[1])
callbacks = []
if len(sys.argv) > 2:
    where, step = sys.argv[2], int(sys.argv[3])
    if where == "step":
        callbacks.append(KillAtStep(step))
    elif where == "save":
        original = RxfTrainerMixin._save_rng_state

        def save_then_die(self, output_dir):
            # Model, optimizer and scheduler are already written; RNG and trainer state are not.
            if self.state.global_step == step:
                die()
            return original(self, output_dir)

        RxfTrainerMixin._save_rng_state = save_then_die
run_training(config, extra_callbacks=callbacks)
