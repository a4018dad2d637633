"""Issue 16's GLUE sweep on one GPU (an H200) in under 10 minutes: the same configs, many runs in flight.

Here, on the CPU machine, once (writes ``.gpu/``, which git ignores through .git/info/exclude)::

    python docs/results/glue-full/gpu_sweep.py prepare

There, through the device tool, as one command (``carry: [".gpu"]``)::

    python3 docs/results/glue-full/gpu_sweep.py run --out $OUT --minutes 9

Back here, the records go into a folder of their own (their run ids differ from the CPU runs':
the model and data paths are part of a run's identity), reported like the CPU ones::

    mkdir -p docs/results/glue-full/gpu && tar xzf <files_at>/glue-full-gpu.tar.gz -C docs/results/glue-full/gpu
    rxf report --runs docs/results/glue-full/gpu --output-dir docs/results/glue-full/gpu-report

Check of the whole path on this CPU (tiny budget, no GPU; what CI cannot show is the CUDA part)::

    python docs/results/glue-full/gpu_sweep.py prepare --no-wheels
    python docs/results/glue-full/gpu_sweep.py run --smoke --device cpu --parallel 2 --out /tmp/gpu-smoke

What travels (the device's limit is 64 MiB beside the working tree): the packaged
all-MiniLM-L6-v2 with its weights in **half precision** (45 MB instead of 90 MB; turned back into
fp32 there before training, so that the runs train fp32 weights as the CPU runs do), the GLUE
TSVs of the four tasks (the held-out splits are made there, by the seeded make_holdout.py), and wheels of what the device's Python lacks
(datasets, optuna and their own needs). The device runs rxf from this working tree (``src/``).

``run`` starts one ``rxf sweep`` per (task, method) of configs/glue-full/cpu.yaml and the
extra rows' cpu-*-<task>.yaml (dropout 0 on RTE and MRPC, the normalised head on STS-B) — each does its search on the held-out split, then its seeds — all in flight at
once (``--parallel``), one CPU thread each. Training is fp32 with TF32 off, as on the CPU, so
that the paper's σ = 1e-5 is not rounded away by a half-precision matmul. At ``--minutes`` it stops
what is still running; every finished run is already a record, so a second call continues.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
GPU_DIR = ROOT / ".gpu"
# The main rows, then every extra part (cpu-nodrop-rte.yaml, cpu-sn-stsb.yaml, ...), as run_sweep.sh runs them.
CONFIGS = [ROOT / "configs/glue-full/cpu.yaml", *sorted((ROOT / "configs/glue-full").glob("cpu-*-*.yaml"))]
GLUE_FOLDERS = ["RTE", "MRPC", "STS-B", "CoLA"]
# What the device's Python (see the device tool's KINDS.md) lacks of rxf's needs, with their own needs.
WHEELS = ["datasets", "dill", "multiprocess", "optuna", "alembic", "sqlalchemy", "mako", "colorlog", "greenlet"]


def prepare(args: argparse.Namespace) -> None:
    from safetensors.torch import load_file, save_file

    from rxf.models import resolve_model

    GPU_DIR.mkdir(exist_ok=True)
    exclude = ROOT / ".git/info/exclude"
    if (ROOT / ".git").is_dir():
        exclude.parent.mkdir(exist_ok=True)
        known = exclude.read_text() if exclude.is_file() else ""
        if "/.gpu/" not in known:
            exclude.write_text(known + "/.gpu/\n")
    # The model, weights in fp16.
    source, model_dir = Path(resolve_model("all-MiniLM-L6-v2")), GPU_DIR / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.copytree(source, model_dir, ignore=shutil.ignore_patterns("model.safetensors", "*.bin", "*.pt", "*.pkl"))
    weights = {k: (v.half() if v.is_floating_point() else v) for k, v in load_file(source / "model.safetensors").items()}
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    # The data of the four tasks (the held-out splits are made there: make_holdout.py is seeded).
    for folder in GLUE_FOLDERS:
        target = GPU_DIR / "glue" / folder
        target.mkdir(parents=True, exist_ok=True)
        for split in ("train.tsv", "dev.tsv"):
            shutil.copy2(Path(args.glue) / folder / split, target / split)
    if not args.no_wheels:
        wheels = GPU_DIR / "wheels"
        wheels.mkdir(exist_ok=True)
        platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
             "--implementation", "cp", *platforms, "-d", str(wheels), *WHEELS],
            check=True,
        )
    size = sum(p.stat().st_size for p in GPU_DIR.rglob("*") if p.is_file())
    print(f"wrote {GPU_DIR} ({size / 2**20:.1f} MiB); on the device: python3 {Path(__file__).relative_to(ROOT)} run --out $OUT")


def device_environment(args: argparse.Namespace) -> dict[str, str]:
    """The environment of every worker: rxf from src/, the carried wheels, one thread, offline."""
    paths = [str(ROOT / "src")]
    wheels = sorted((GPU_DIR / "wheels").glob("*.whl"))
    if wheels:
        site = Path("/tmp/rxf-site")
        if not site.is_dir():
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
                            "--target", str(site), *map(str, wheels)], check=True)
        paths.append(str(site))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "NVIDIA_TF32_OVERRIDE": "0"}  # fp32 matmuls stay fp32: σ = 1e-5 must survive, as on the CPU
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def fp32_model(target: Path) -> Path:
    """The carried fp16 model as fp32 weights (what every run trains), written once."""
    from safetensors.torch import load_file, save_file

    if not (target / "model.safetensors").is_file():
        shutil.copytree(GPU_DIR / "model", target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model.safetensors"))
        weights = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(GPU_DIR / "model/model.safetensors").items()}
        save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


def held_out_splits(target: Path) -> Path:
    """The held-out splits of make_holdout.py (same seed, same rows as on the CPU machine)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_holdout import TASKS, split

    for folder, has_header in TASKS.items():
        split(GPU_DIR / "glue" / folder / "train.tsv", target / folder, has_header, 0.1, 0)
    return target


def sweep_file(config: Path, work: Path, model: Path, records: Path, smoke: bool) -> Path:
    """The sweep config with the device's paths (model, data, output) and, for a smoke run, a tiny budget."""
    values = yaml.safe_load(config.read_text())
    values["recipes"] = [str(config.parent / recipe) for recipe in values["recipes"]]
    values["overrides"] = {**values.get("overrides", {}), "model": str(model), "data_dir": str(GPU_DIR / "glue")}
    values["search_overrides"] = {**values.get("search_overrides", {}), "data_dir": str(work / "glue-holdout")}
    values["output_dir"] = str(records)
    if smoke:
        values["overrides"].update(max_steps=2, eval_steps=2, max_train_samples=32, max_eval_samples=16)
        values.update(trials=1, seeds=[1])
    path = work / config.name
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if not (GPU_DIR / "model/model.safetensors").is_file():
        sys.exit(f"{GPU_DIR} is not prepared: run `gpu_sweep.py prepare` on the CPU machine and carry .gpu")
    env = device_environment(args)
    model = fp32_model(work / "model")
    held_out_splits(work / "glue-holdout")
    records = work / "sweep"
    jobs = []
    for config in CONFIGS:
        path = sweep_file(config, work, model, records, args.smoke)
        values = yaml.safe_load(path.read_text())
        for recipe in values["recipes"]:
            for method in values["methods"]:
                jobs.append((f"{Path(recipe).stem}-{method}", path, Path(recipe).stem, method))
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    deadline = started + 60 * args.minutes
    waiting, running = list(jobs), []
    while waiting or running:
        while waiting and len(running) < args.parallel and time.monotonic() < deadline:
            name, path, task, method = waiting.pop(0)
            command = [sys.executable, "-m", "rxf.cli", "sweep", "--config", str(path), "--tasks", task, "--methods", method]
            log = open(logs / f"{name}.log", "w")
            running.append((name, subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
        if time.monotonic() >= deadline:
            for name, process, _ in running:
                process.terminate()
            waiting = []
        for item in list(running):
            name, process, log = item
            if process.poll() is not None:
                log.close()
                running.remove(item)
                print(f"{time.monotonic() - started:6.0f}s {name}: exit {process.returncode}", flush=True)
        time.sleep(2)
    finished = sorted((records / "records").glob("*.json")) if (records / "records").is_dir() else []
    with tarfile.open(out / "glue-full-gpu.tar.gz", "w:gz") as archive:
        for path in finished:
            archive.add(path, arcname=f"records/{path.name}")
        archive.add(logs, arcname="gpu-logs")
    print(f"{len(finished)} run records in {time.monotonic() - started:.0f}s -> {out / 'glue-full-gpu.tar.gz'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    prep = verbs.add_parser("prepare", help="write .gpu/ here: fp16 model, GLUE data, wheels")
    prep.add_argument("--glue", default=str(ROOT.parent / "shared/data/glue"))
    prep.add_argument("--no-wheels", action="store_true", help="skip the wheels (a CPU check needs none)")
    go = verbs.add_parser("run", help="run the sweeps on the device (or, with --device cpu --smoke, check them here)")
    go.add_argument("--out", required=True)
    go.add_argument("--work", default="/tmp/rxf-gpu-sweep")
    go.add_argument("--minutes", type=float, default=9.0)
    go.add_argument("--parallel", type=int, default=24)
    go.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    go.add_argument("--smoke", action="store_true", help="2 steps per run, 1 trial, 1 seed: a check of the path")
    args = parser.parse_args()
    prepare(args) if args.verb == "prepare" else run(args)


if __name__ == "__main__":
    main()
