"""Loads the compiled modules and reports what was built.

`fedrobust._cpu` is always built; `fedrobust._cuda` only where a CUDA
compiler was found at build time (see CMakeLists.txt, FEDROBUST_CUDA).
"""
from __future__ import annotations

import platform
from typing import Any, Optional

import numpy as np

try:
    from fedrobust import _cpu as cpu
except ImportError as error:  # e.g. importing the source tree, which holds no compiled module
    import os

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
    import os

    from fedrobust.params import as_int

    n = as_int(n, "num_threads")
    most = max(256, 8 * (os.cpu_count() or 1))
    if not 1 <= n <= most:
        raise ValueError(f"num_threads must be in [1, {most}], got {n}")
    cpu.set_num_threads(n)


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
            "simd_available": [s for s in ("generic", "avx2") if cpu.simd_level_available(s)],
            "threads": cpu.max_threads(),
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
