"""Beyond one process, measured in one sitting (the README's "On several machines" figures).

1. A sweep of 8 runs (digits LR, m = 100; 2 rules x 2 attacks x 2 seeds): the whole
   `fedrobust sweep` command, wall time, run one after another (one thread per run, and
   every thread of the machine per run) and as Ray tasks (`--ray`, a Ray started here,
   one CPU per run; Ray's start-up included).
2. `fedrobust run --ray` against the single process: MNIST LR, m = 1,000 (needs the MNIST
   IDX files: --mnist DIR, default ../shared/data/mnist): rounds per second of the
   training (the runs' own train_seconds), single process with all threads and Ray with
   one actor per CPU of one thread each, and the same results checked.

    python bench/distributed.py [--rounds 20000] [--mnist-rounds 30] [--json bench/results/distributed.json]

Take the figures on a quiet machine: other processes change both sides' times.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

RULES = ("median", "trimmed_mean")
ATTACKS = ("none", "trim")


def _fedrobust(args: List[str], cwd: str) -> float:
    """Wall seconds of `fedrobust ARGS` in a new process (its output discarded); fails loudly."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fedrobust.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"fedrobust {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def sweep_8_runs(rounds: int, work: str) -> Dict[str, Any]:
    grid = os.path.join(work, "grid.toml")
    with open(grid, "w") as f:
        f.write(f'seeds = 2\nrows = ["rule"]\ncolumns = ["attack"]\n[settings]\nworkers = 100\ncompromised = 20\n'
                f'rounds = {rounds}\neval_every = {rounds // 10}\nrule = {json.dumps(list(RULES))}\n'
                f'attack = {json.dumps(list(ATTACKS))}\n')
    cpus = os.cpu_count() or 1
    times = {
        "one_after_another_1_thread": _fedrobust(["sweep", grid, "--out", "serial1", "--quiet", "--threads", "1"],
                                                 work),
        f"one_after_another_{cpus}_threads": _fedrobust(["sweep", grid, "--out", "serialn", "--quiet", "--threads",
                                                         str(cpus)], work),
        "ray_1_cpu_per_run": _fedrobust(["sweep", grid, "--out", "ray", "--quiet", "--ray"], work),
    }
    same = _tables(os.path.join(work, "serial1")) == _tables(os.path.join(work, "ray"))
    return {"runs": 8, "rounds_per_run": rounds, "seconds": times, "same_table": same,
            "ray_over_one_after_another": times["ray_1_cpu_per_run"] / times["one_after_another_1_thread"]}


def _tables(out: str) -> Any:
    with open(os.path.join(out, "table.json")) as f:
        table = json.load(f)
    return [{k: v for k, v in cell.items() if k != "dirs"} for cell in table["cells"]]


def run_on_ray(mnist: str, rounds: int, work: str) -> Dict[str, Any]:
    cpus = os.cpu_count() or 1
    common = ["run", "--dataset", "mnist", "--data-dir", mnist, "--workers", "1000", "--compromised", "0",
              "--rounds", str(rounds), "--eval-every", str(rounds), "--quiet"]
    wall = {"single_process": _fedrobust([*common, "--out", "run-single", "--threads", str(cpus)], work),
            "ray": _fedrobust([*common, "--out", "run-ray", "--ray", "--actors", str(cpus)], work)}
    summary = {}
    for name in ("run-single", "run-ray"):
        with open(os.path.join(work, name, "summary.json")) as f:
            summary[name[4:]] = json.load(f)
    rate = {k: summary[k]["rounds_per_second"] for k in summary}
    return {"workers": 1000, "rounds": rounds, "actors": cpus, "threads_per_actor": 1,
            "rounds_per_second": rate, "wall_seconds": wall,
            "ray_round_time_over_single": rate["single"] / rate["ray"],
            "same_final_error": summary["single"]["final_test_error"] == summary["ray"]["final_test_error"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20000, help="rounds of each of the sweep's 8 runs")
    p.add_argument("--mnist", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist"))
    p.add_argument("--mnist-rounds", type=int, default=30)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    result: Dict[str, Any] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as work:  # not the source tree: Ray's workers start in this directory
        result["sweep"] = sweep_8_runs(args.rounds, work)
        print(json.dumps(result["sweep"], indent=1), flush=True)
        if os.path.isdir(args.mnist):
            result["run_ray_mnist_lr"] = run_on_ray(os.path.abspath(args.mnist), args.mnist_rounds, work)
            print(json.dumps(result["run_ray_mnist_lr"], indent=1), flush=True)
        else:
            print(f"no MNIST at {args.mnist}: the run --ray measurement is skipped", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1, allow_nan=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
