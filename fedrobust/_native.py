"""Loads the compiled modules and reports what was built.

`fedrobust._cpu` is always built; `fedrobust._cuda` only where a CUDA
compiler was found at build time (see CMakeLists.txt, FEDROBUST_CUDA).
"""
from __future__ import annotations

import os
import platform
from typing import Any, Optional

import numpy as np

# OpenMP's idle threads spin before they sleep: by default (GCC's libgomp) 300,000 times, so on
# a machine where another process is busy they take the cores it needs, and a run slows
# several-fold. Unless the user chose (OMP_WAIT_POLICY, GOMP_SPINCOUNT), they spin 10,000
# times (tens of microseconds: back-to-back kernels keep their speed) and then sleep. Read
# when the OpenMP runtime loads, i.e. the first import of fedrobust or torch in the process.
SPIN_COUNT = "10000"
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT

try:
    from fedrobust import _cpu as cpu
except ImportError as error:  # e.g. importing the source tree, which holds no compiled module
    raise ImportError(
        f"fedrobust's compiled module _cpu was not found next to {os.path.dirname(__file__)}: "
        "install the package (pip install .) and import it from outside the source tree "
        "(python -m from the repository root puts the source tree first on sys.path)"
    ) from error

try:  # built only with a CUDA compiler
    from fedrobust import _cuda as cuda  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    cuda = None

_CUDA_MODULE: Optional[Any] = cuda


def set_num_threads(n: int) -> None:
    """Set the number of OpenMP threads the CPU kernels use (results do not depend on it):
    an integer from 1 to max(256, 8 x the CPUs)."""
    from fedrobust.params import as_int

    n = as_int(n, "num_threads")
    most = max(256, 8 * (os.cpu_count() or 1))
    if not 1 <= n <= most:
        raise ValueError(f"num_threads must be in [1, {most}], got {n}")
    cpu.set_num_threads(n)


def set_threads(n: int) -> None:
    """n threads in the fedrobust kernels and in torch's CPU operations (the simulation's
    training): what `--threads` sets."""
    set_num_threads(n)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(int(n))


def backend_info() -> dict:
    """What was built and what this machine offers.

    Returns a dict with the package version, the CPU module (SIMD level in use
    and available, OpenMP threads and version, compiler), the CUDA module
    (built or not, its architectures, runtime/driver versions, visible
    devices) and the numpy / torch / cupy versions found.
    """
    info: dict = {
        "version": cpu.version,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": {
            "built": True,
            "simd": cpu.simd_level(),
            "simd_available": [s for s in ("generic", "avx2", "avx512") if cpu.simd_level_available(s)],
            "threads": cpu.max_threads(),
            "thread_waiting": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
            "openmp": cpu.openmp_version,
            "compiler": cpu.compiler,
        },
        "cuda": {"built": _CUDA_MODULE is not None},
        "numpy": np.__version__,
    }
    if _CUDA_MODULE is not None:
        info["cuda"].update(
            architectures=_CUDA_MODULE.architectures,
            runtime_version=_CUDA_MODULE.runtime_version(),
            driver_version=_CUDA_MODULE.driver_version(),
            devices=_CUDA_MODULE.device_names(),
            device_error=_CUDA_MODULE.device_error(),
        )
    for name in ("torch", "cupy"):
        try:
            module = __import__(name)
            info[name] = module.__version__
        except ImportError:
            info[name] = None
    return info
