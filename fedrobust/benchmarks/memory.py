"""Peak extra memory of one fedrobust kernel call, measured in a fresh Python process.

`measure_peak_extra_memory` starts the process; `_memory_probe` is what runs in it. This
module imports no torch, so neither does the probe's process.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from typing import Optional, Tuple

import numpy as np

import fedrobust
from fedrobust.benchmarks.cases import fedrobust_cases
from fedrobust.benchmarks.inputs import SEED, byzantine_count, make_updates


def _proc_status_mib(field: str) -> Optional[float]:
    """A kB field of /proc/self/status (Linux) in MiB, or None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def _peak_rss_mib() -> Tuple[float, str]:
    """Peak resident set size of this process so far, and where it was read.

    Linux: VmHWM, the peak of this process's own address space. ru_maxrss is not used there
    because the kernel carries the parent's peak across fork + exec into the child's ru_maxrss,
    so a child of a big parent reads the parent's peak. Elsewhere: ru_maxrss (bytes on macOS).
    """
    hwm = _proc_status_mib("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (rss / 2**20 if sys.platform == "darwin" else rss / 2**10), "ru_maxrss"


def _reset_peak_rss() -> bool:
    """Lower the peak RSS mark (VmHWM) to the current RSS (Linux >= 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _memory_probe(rule: str, m: int, d: int, threads: int, seed: int) -> dict:
    """Run in the fresh process: build U, warm the kernel up on a small copy (thread pool, lazy
    initialisation), lower the peak mark to the current RSS (the warm-up's own (m, m) scratch
    would otherwise hide the call's), then record the peak RSS before and after one call on U."""
    fedrobust.set_num_threads(threads)
    c = beta = byzantine_count(m)
    U = make_updates(m, d, seed)
    small = np.ascontiguousarray(U[:, :256])
    warm = {case.rule: case.fn for case in fedrobust_cases(small, c, beta)}
    warm[rule]()
    fn = {case.rule: case.fn for case in fedrobust_cases(U, c, beta)}[rule]
    del warm
    peak_reset = _reset_peak_rss()
    rss_before = _proc_status_mib("VmRSS")
    before, source = _peak_rss_mib()
    out = fn()
    after, _ = _peak_rss_mib()
    del out
    return {"peak_extra_mib": after - before, "peak_before_mib": before, "rss_before_mib": rss_before,
            "peak_source": source, "peak_reset": peak_reset}


_PROBE_SCRIPT = """
import json, sys
args = json.loads(sys.argv[1])
sys.path[:] = args.pop("sys_path")
import fedrobust
fedrobust.__path__[:] = args.pop("package_path")
from fedrobust.benchmarks.memory import _memory_probe
print(json.dumps(_memory_probe(**args)))
"""


def measure_peak_extra_memory(rule: str, m: int, d: int, threads: int, seed: int = SEED) -> dict:
    """Peak RSS increase (MiB) while the fedrobust kernel `rule` runs once on a fresh (m, d) U.

    A new Python process (same interpreter, same sys.path and fedrobust package as this one, no
    torch) builds U, warms the kernel up on a 256-column copy, resets the peak mark to the
    current RSS where the OS allows it (`peak_reset`), reads its peak RSS (see `_peak_rss_mib`),
    calls the kernel on U and reads the peak again; the difference is the memory the call needed
    beyond what the process already held (U included), output included. The dict also gives
    the resident size just before the call: were it well below the peak before the call (no
    reset), the call could reuse that room unseen.
    """
    args = {
        "rule": rule, "m": m, "d": d, "threads": threads, "seed": seed,
        "sys_path": list(sys.path), "package_path": list(fedrobust.__path__),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT, json.dumps(args)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe for {rule} on ({m}, {d}) failed:\n{proc.stderr.strip()}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
