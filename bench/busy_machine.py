"""fedrobust on a busy machine: the speed of a 200-round MNIST LR run and of `mean` on a
(100, 1e4) float32 array, on a quiet machine and beside one busy process, for the OpenMP
waiting policies (README, "Threads").

    python bench/busy_machine.py --data-dir ../shared/data        # about a minute on 2 cores

Each measurement runs in a fresh process, so the policy is read when OpenMP loads:
  fedrobust default  what fedrobust sets when you set nothing (GOMP_SPINCOUNT=10000)
  spin 300000        libgomp's own default (what ran before fedrobust set one)
  passive            OMP_WAIT_POLICY=passive
Take the figures from one sitting on an otherwise quiet machine: they are ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

POLICIES = {"fedrobust default": {}, "spin 300000": {"GOMP_SPINCOUNT": "300000"},
            "passive": {"OMP_WAIT_POLICY": "passive"}}

MEASURE = r"""
import json, sys, time, timeit
import numpy as np
import fedrobust as fr
from fedrobust.simulation import Config, Simulation
U = np.random.default_rng(0).standard_normal((100, 10000)).astype(np.float32)
fr.aggregators.mean(U)
mean_ms = min(timeit.repeat(lambda: fr.aggregators.mean(U), number=20, repeat=5)) / 20 * 1e3
config = Config(dataset="mnist", data_dir=sys.argv[1], model="lr", rule="median", rounds=200, eval_every=200)
summary = Simulation(config, progress=False).run()
print(json.dumps({"mean_ms": mean_ms, "rounds_per_s": summary["rounds_per_second"]}))
"""


def measure(data_dir: str, env: dict) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", MEASURE, data_dir], env={**clean, **env}, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("FEDROBUST_DATA"), help="directory with mnist/")
    args = parser.parse_args()
    if not args.data_dir:
        parser.error("--data-dir (or FEDROBUST_DATA) must name a directory with the MNIST IDX files")
    results = {name: {"quiet": measure(args.data_dir, env)} for name, env in POLICIES.items()}
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for name, env in POLICIES.items():
            results[name]["busy"] = measure(args.data_dir, env)
    finally:
        busy.kill()
    print(f"{'policy':18s} {'rounds/s quiet':>15s} {'busy':>8s} {'ratio':>6s} {'mean ms quiet':>14s} {'busy':>7s}")
    for name, r in results.items():
        q, b = r["quiet"], r["busy"]
        print(f"{name:18s} {q['rounds_per_s']:15.1f} {b['rounds_per_s']:8.1f} "
              f"{b['rounds_per_s'] / q['rounds_per_s']:6.2f} {q['mean_ms']:14.3f} {b['mean_ms']:7.3f}")


if __name__ == "__main__":
    main()
