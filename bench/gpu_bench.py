"""GPU benchmark of the CUDA kernels (part of bench/gpu_check.sh): coordinate-wise median,
trimmed mean and Krum of a float32 (m, d) torch CUDA tensor against torch on the same GPU
(torch.median, a torch.sort trimmed mean, a torch.cdist Krum), and against the device's copy
bandwidth (the read-once bound), measured in the same run with CUDA events.

    python bench/gpu_bench.py [--m 100] [--d 10000000] [--repeats 10] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import sys

import fedrobust
from fedrobust import aggregators


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


def run(m: int, d: int, beta: int, repeats: int) -> dict:
    import torch

    torch.manual_seed(0)
    U = torch.randn(m, d, device="cuda", dtype=torch.float32)
    gib = U.numel() * U.element_size() / 2**30
    copy_s = timed(lambda: U.clone(), repeats)  # reads and writes the array once
    read_bandwidth = U.numel() * U.element_size() / (copy_s / 2)  # bytes per second, one direction
    read_once_s = U.numel() * U.element_size() / read_bandwidth
    c = (m - 3) // 2 if m <= 2 * beta + 2 else beta
    rows = {
        "fedrobust median": timed(lambda: aggregators.median(U), repeats),
        "torch.median(dim=0)": timed(lambda: U.median(dim=0), repeats),
        f"fedrobust trimmed mean (beta {beta})": timed(lambda: aggregators.trimmed_mean(U, beta), repeats),
        "torch sort-based trimmed mean": timed(lambda: torch_trimmed_mean(U, beta), repeats),
        f"fedrobust Krum (c {c})": timed(lambda: aggregators.krum(U, c), repeats),
        "torch.cdist-based Krum": timed(lambda: torch_krum(U, c), repeats),
    }
    same = int(aggregators.krum_select(U, c)[0]) == int(torch_krum_index(U, c))
    return {"device": torch.cuda.get_device_name(), "m": m, "d": d, "beta": beta, "c": c, "gib": gib,
            "krum_same_choice_as_torch_cdist": same,
            "copy_seconds": copy_s, "read_once_seconds": read_once_s,
            "rows": {k: {"seconds": v, "fraction_of_read_bandwidth": read_once_s / v} for k, v in rows.items()},
            "fedrobust": fedrobust.backend_info()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--m", type=int, default=100)
    p.add_argument("--d", type=int, default=10_000_000)
    p.add_argument("--beta", type=int, default=20)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    result = run(args.m, args.d, args.beta, args.repeats)
    print(f"{result['device']}: U ({args.m}, {args.d}) float32, {result['gib']:.2f} GiB; "
          f"read once {result['read_once_seconds'] * 1e3:.2f} ms (from a clone: {result['copy_seconds'] * 1e3:.2f} ms)")
    print(f"  Krum picks the same row as the torch.cdist version: {result['krum_same_choice_as_torch_cdist']}")
    for name, row in result["rows"].items():
        print(f"  {name:<40} {row['seconds'] * 1e3:9.2f} ms  {100 * row['fraction_of_read_bandwidth']:6.1f}% of read bandwidth")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
