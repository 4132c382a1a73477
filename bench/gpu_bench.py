"""GPU benchmark of the CUDA kernels (part of bench/gpu_check.sh).

1. Kernels: the rules on a float32 (m, d) torch CUDA tensor against torch on the same GPU
   (torch.median, a torch.sort trimmed mean, a torch.cdist Krum) and against the device's copy
   bandwidth (the read-once bound), measured in the same run with CUDA events; at the
   issue's size (100, 1e7) and at MNIST LR's size with many workers (10,000, 7,850), where the
   median and the trimmed mean take the block-wide radix selection.
2. End to end: rounds per second of `fedrobust run --device cuda` with MNIST LR, 10,000
   workers, the median and the partial-knowledge trim attack (MNIST from --data-dir; without
   it, synthetic MNIST-shaped data, which says so in the output).

The torch versions and the timing are fedrobust.benchmarks.baselines and .timing, shared
with ``fedrobust bench``.

    python bench/gpu_bench.py [--m 100] [--d 10000000] [--repeats 10] [--data-dir DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

import fedrobust
from fedrobust import aggregators
from fedrobust.benchmarks import baselines as bl
from fedrobust.benchmarks.timing import best_time_cuda, median_time


def kernels(m: int, d: int, beta: int, repeats: int, krum: bool = True) -> dict:
    import torch

    def timed(fn) -> float:
        return best_time_cuda(fn, repeats)

    torch.manual_seed(0)
    U = torch.randn(m, d, device="cuda", dtype=torch.float32)
    gib = U.numel() * U.element_size() / 2**30
    copy_s = timed(lambda: U.clone())  # reads and writes the array once
    read_bandwidth = U.numel() * U.element_size() / (copy_s / 2)  # bytes per second, one direction
    read_once_s = U.numel() * U.element_size() / read_bandwidth
    c = min(beta, (m - 3) // 4)
    rows = {
        "fedrobust median": timed(lambda: aggregators.median(U)),
        "torch.median(dim=0)": timed(lambda: bl.torch_median(U)),
        f"fedrobust trimmed mean (beta {beta})": timed(lambda: aggregators.trimmed_mean(U, beta)),
        "torch sort-based trimmed mean": timed(lambda: bl.torch_trimmed_mean(U, beta)),
        "fedrobust mean": timed(lambda: aggregators.mean(U)),
        "torch mean(dim=0)": timed(lambda: bl.torch_mean(U)),
    }
    result = {"m": m, "d": d, "beta": beta, "gib": gib, "copy_seconds": copy_s, "read_once_seconds": read_once_s}
    if krum:
        rows[f"fedrobust Krum (c {c})"] = timed(lambda: aggregators.krum(U, c))
        rows["torch.cdist-based Krum"] = timed(lambda: bl.torch_krum(U, c))
        rows[f"fedrobust Multi-Krum (c {c}, multi {m - c})"] = timed(lambda: aggregators.krum(U, c, multi=m - c))
        rows[f"fedrobust Bulyan (c {c})"] = timed(lambda: aggregators.bulyan(U, c))
        result["c"] = c
        same = int(aggregators.krum_select(U, c)[0]) == int(bl.torch_krum_index(U, c))
        result["krum_same_choice_as_torch_cdist"] = same
    result["rows"] = {k: {"seconds": v, "fraction_of_read_bandwidth": read_once_s / v} for k, v in rows.items()}
    result["speedups"] = {
        "median vs torch.median": rows["torch.median(dim=0)"] / rows["fedrobust median"],
        "trimmed mean vs torch sort": (rows["torch sort-based trimmed mean"]
                                       / rows[f"fedrobust trimmed mean (beta {beta})"]),
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

    seconds = median_time(one_round, rounds, warmup=2)
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
    p.add_argument("--data-dir", help="directory with mnist/ (IDX files) for the end-to-end run")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    result = run(args.m, args.d, args.beta, args.repeats, args.data_dir)
    print(report(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
