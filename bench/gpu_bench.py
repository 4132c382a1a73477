"""GPU benchmark of the CUDA kernels (part of bench/gpu_check.sh).

1. Kernels: the rules on a float32 (m, d) torch CUDA tensor against torch on the same GPU
   (torch.median, a torch.sort trimmed mean, a torch.cdist Krum) and against the device's copy
   bandwidth (the read-once bound), measured in the same run with CUDA events; at the
   issue's size (100, 1e7) and at MNIST LR's size with many workers (10,000, 7,850), where the
   median and the trimmed mean take the block-wide radix selection.
2. End to end: rounds per second of `fedrobust run --device cuda` with MNIST LR, 10,000
   workers, the median and the partial-knowledge trim attack (MNIST from --data-dir, by default
   the tests' data directory: $FEDROBUST_TEST_DATA, else ../shared/data next to the repository
   root; without mnist/ there, synthetic MNIST-shaped data, which says so in the output).

    python bench/gpu_bench.py [--m 100] [--d 10000000] [--repeats 10] [--data-dir DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

import fedrobust
from fedrobust import aggregators

TEST_DATA_ENV = "FEDROBUST_TEST_DATA"  # the same variable and default as tests/conftest.py
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_data_dir() -> Optional[str]:
    """$FEDROBUST_TEST_DATA, else ../shared/data relative to the repository root, when it holds
    mnist/; else None (synthetic data)."""
    value = os.environ.get(TEST_DATA_ENV)
    root = Path(value) if value else REPO_ROOT.parent / "shared" / "data"
    if (root / "mnist").is_dir():
        return str(root)
    print(f"== no {root / 'mnist'} (set {TEST_DATA_ENV} or --data-dir): synthetic data", file=sys.stderr)
    return None


def timed(fn, repeats: int) -> float:
    """Best seconds of `repeats` calls of fn (after one warm-up), by CUDA events."""
    import torch

    fn()
    best = float("inf")
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, start.elapsed_time(stop) / 1e3)
    return best


def torch_trimmed_mean(U, beta: int):
    m = U.shape[0]
    return U.sort(dim=0).values[beta:m - beta].mean(dim=0)


def torch_krum_index(U, c: int):
    """Krum's choice from torch.cdist (squared distances, m - c - 2 nearest, self excluded)."""
    D = torch_cdist_sq(U)
    k = U.shape[0] - c - 2
    D.fill_diagonal_(float("inf"))
    return D.topk(k, dim=1, largest=False).values.sum(dim=1).argmin()


def torch_cdist_sq(U):
    import torch

    return torch.cdist(U.unsqueeze(0), U.unsqueeze(0)).squeeze(0).pow(2)


def torch_krum(U, c: int):
    return U[torch_krum_index(U, c)]


def kernels(m: int, d: int, beta: int, repeats: int, krum: bool = True) -> dict:
    import torch

    torch.manual_seed(0)
    U = torch.randn(m, d, device="cuda", dtype=torch.float32)
    gib = U.numel() * U.element_size() / 2**30
    copy_s = timed(lambda: U.clone(), repeats)  # reads and writes the array once
    read_bandwidth = U.numel() * U.element_size() / (copy_s / 2)  # bytes per second, one direction
    read_once_s = U.numel() * U.element_size() / read_bandwidth
    c = min(beta, (m - 3) // 4)
    rows = {
        "fedrobust median": timed(lambda: aggregators.median(U), repeats),
        "torch.median(dim=0)": timed(lambda: U.median(dim=0), repeats),
        f"fedrobust trimmed mean (beta {beta})": timed(lambda: aggregators.trimmed_mean(U, beta), repeats),
        "torch sort-based trimmed mean": timed(lambda: torch_trimmed_mean(U, beta), repeats),
        "fedrobust mean": timed(lambda: aggregators.mean(U), repeats),
        "torch mean(dim=0)": timed(lambda: U.mean(dim=0), repeats),
    }
    result = {"m": m, "d": d, "beta": beta, "gib": gib, "copy_seconds": copy_s, "read_once_seconds": read_once_s}
    if krum:
        rows[f"fedrobust Krum (c {c})"] = timed(lambda: aggregators.krum(U, c), repeats)
        rows["torch.cdist-based Krum"] = timed(lambda: torch_krum(U, c), repeats)
        rows[f"fedrobust Multi-Krum (c {c}, multi {m - c})"] = timed(lambda: aggregators.krum(U, c, multi=m - c),
                                                                    repeats)
        rows[f"fedrobust Bulyan (c {c})"] = timed(lambda: aggregators.bulyan(U, c), repeats)
        result["c"] = c
        result["krum_same_choice_as_torch_cdist"] = int(aggregators.krum_select(U, c)[0]) == int(torch_krum_index(U, c))
    result["rows"] = {k: {"seconds": v, "fraction_of_read_bandwidth": read_once_s / v} for k, v in rows.items()}
    result["speedups"] = {
        "median vs torch.median": rows["torch.median(dim=0)"] / rows["fedrobust median"],
        "trimmed mean vs torch sort":
            rows["torch sort-based trimmed mean"] / rows[f"fedrobust trimmed mean (beta {beta})"],
    }
    if krum:
        result["speedups"]["Krum vs torch.cdist"] = rows["torch.cdist-based Krum"] / rows[f"fedrobust Krum (c {c})"]
    return result


def simulation(data_dir: Optional[str], workers: int = 10_000, rounds: int = 20) -> dict:
    """Median seconds per round (after two warm-up rounds; training, attack, aggregation and the
    global update, no evaluation) of MNIST LR on the GPU, median, partial-knowledge trim attack."""
    import torch

    from fedrobust.simulation import Config, Simulation

    dataset = "mnist" if data_dir else "synthetic"
    sim = Simulation(Config(dataset=dataset, data_dir=data_dir, workers=workers, compromised=workers // 5,
                            rule="median", attack="trim", knowledge="partial", lr=0.1, device="cuda", out=None),
                     progress=False)
    state = sim.initial_state()

    def one_round():
        sim.step(state)
        torch.cuda.synchronize()

    for _ in range(2):
        one_round()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        one_round()
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    return {"dataset": dataset, "workers": workers, "rule": "median", "attack": "trim (partial knowledge)",
            "seconds_per_round": seconds, "rounds_per_second": 1 / seconds}


def run(m: int, d: int, beta: int, repeats: int, data_dir: Optional[str]) -> dict:
    import torch

    return {"device": torch.cuda.get_device_name(),
            "kernels": [kernels(m, d, beta, repeats), kernels(10_000, 7_850, 2_000, repeats, krum=False)],
            "simulation": simulation(data_dir),
            "fedrobust": fedrobust.backend_info()}


def report(result: dict) -> str:
    lines = [result["device"]]
    for k in result["kernels"]:
        lines.append(f"U ({k['m']}, {k['d']}) float32, {k['gib']:.2f} GiB; read once "
                     f"{k['read_once_seconds'] * 1e3:.2f} ms (from a clone: {k['copy_seconds'] * 1e3:.2f} ms)")
        if "krum_same_choice_as_torch_cdist" in k:
            same = k["krum_same_choice_as_torch_cdist"]
            lines.append(f"  Krum picks the same row as the torch.cdist version: {same}")
        for name, row in k["rows"].items():
            lines.append(f"  {name:<44} {row['seconds'] * 1e3:9.2f} ms  "
                         f"{100 * row['fraction_of_read_bandwidth']:6.1f}% of read bandwidth")
        for name, ratio in k["speedups"].items():
            lines.append(f"  speedup, {name}: {ratio:.1f}x")
    s = result["simulation"]
    lines.append(f"simulation ({s['dataset']}, LR, {s['workers']} workers, {s['rule']}, {s['attack']}): "
                 f"{s['seconds_per_round'] * 1e3:.1f} ms/round = {s['rounds_per_second']:.1f} rounds/s")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=100)
    p.add_argument("--d", type=int, default=10_000_000)
    p.add_argument("--beta", type=int, default=20)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--data-dir", help="directory with mnist/ (IDX files) for the end-to-end run "
                   f"(default: ${TEST_DATA_ENV}, else ../shared/data next to the repository root)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    data_dir = args.data_dir if args.data_dir else default_data_dir()
    result = run(args.m, args.d, args.beta, args.repeats, data_dir)
    print(report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
