"""Array types at the boundary: numpy arrays, torch tensors, cupy arrays.

The kernels take numpy arrays. `as_matrix` turns an input into a zero-copy
numpy view (CPU torch tensors share their memory) and returns a function that
turns a numpy result back into the input's type, so every public function
returns what it was given.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Any, Callable, Optional, Tuple

import numpy as np

from fedrobust._native import cpu, cuda

Wrap = Callable[[np.ndarray], Any]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _type_name(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "device")


def _is_cupy_array(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


def as_matrix(U: Any, name: str = "U") -> Tuple[np.ndarray, Wrap]:
    """Zero-copy numpy view of a 2-D float32/float64 array and a wrapper back to U's type.

    Accepts numpy arrays (any strides) and CPU torch tensors. Raises TypeError
    for other types, non-float dtypes and GPU arrays (the functions that take
    them use `as_cuda_matrix` first), ValueError for a shape other than
    (m >= 1, d >= 1).
    """
    if isinstance(U, np.ndarray):
        X, wrap = U, _identity
    elif _is_torch_tensor(U):
        X, wrap = _torch_view(U, name)
    elif _is_cupy_array(U):
        raise TypeError(
            f"{name}: got a cupy array; this function takes a numpy array or a torch tensor on the CPU; "
            "pass a numpy array"
        )
    else:
        raise TypeError(
            f"{name}: expected a numpy array or a torch tensor of shape (m workers, d parameters), "
            f"got {_type_name(U)}"
        )
    if X.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64 values, got dtype {X.dtype}")
    cpu.check_matrix(X)  # the shape rule lives in the native module (csrc/bindings), once
    return X, wrap


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _torch_view(t: Any, name: str) -> Tuple[np.ndarray, Wrap]:
    import torch

    if t.device.type != "cpu":
        raise TypeError(
            f"{name}: got a torch tensor on {t.device}; this function takes a numpy array or a torch tensor on "
            "the CPU (the aggregation rules and coordinate_stats also take CUDA tensors); pass a CPU tensor"
        )
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name}: expected float32 or float64 values, got dtype {t.dtype}")
    return t.detach().numpy(), torch.from_numpy


@dataclasses.dataclass
class CudaMatrix:
    """A 2-D float array on a CUDA device, as the CUDA kernels take it (zero-copy).

    data: device pointer; shape (m, d); strides in elements (row, column); dtype "float32" or
    "float64"; stream: the producer's current stream (the kernels run on it); empty(shape): a
    new array of the same library, dtype and device; from_host(a): a numpy array copied there;
    device(): a context manager that makes the array's device current.
    """

    data: int
    shape: Tuple[int, int]
    strides: Tuple[int, int]
    dtype: str
    stream: int
    empty: Callable[[Any], Any]
    from_host: Callable[[np.ndarray], Any]
    device: Callable[[], Any]


def as_cuda_matrix(U: Any, name: str = "U") -> Optional[CudaMatrix]:
    """The CudaMatrix of a torch CUDA tensor or a cupy array, None for anything else.

    Raises TypeError when the CUDA module is not built or for a non-float dtype, ValueError
    when no device is visible or for a shape other than (m >= 1, d >= 1).
    """
    if _is_torch_tensor(U) and U.device.type == "cuda":
        import torch

        t = U.detach()
        dtypes = {torch.float32: "float32", torch.float64: "float64"}
        dtype = dtypes.get(t.dtype)
        stream = torch.cuda.current_stream(t.device).cuda_stream
        matrix = CudaMatrix(t.data_ptr(), tuple(t.shape), tuple(t.stride()), dtype, stream,
                            lambda n: torch.empty(n, dtype=t.dtype, device=t.device),
                            lambda a: torch.as_tensor(a, dtype=t.dtype, device=t.device),
                            lambda: torch.cuda.device(t.device))
        given = str(t.dtype)
    elif _is_cupy_array(U):
        import cupy

        dtype = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}.get(np.dtype(U.dtype))
        strides = tuple(s // U.itemsize for s in U.strides)
        stream = cupy.cuda.get_current_stream(U.device.id).ptr  # the stream current on U's device
        matrix = CudaMatrix(U.data.ptr, tuple(U.shape), strides, dtype, stream,
                            lambda n: cupy.empty(n, dtype=U.dtype), lambda a: cupy.asarray(a, dtype=U.dtype),
                            lambda: U.device)
        given = str(U.dtype)
    else:
        return None
    if cuda is None:
        raise TypeError(f"{name}: got a CUDA array, but fedrobust was built without its CUDA module "
                        "(see fedrobust.backend_info()['cuda']); pass a CPU array")
    if dtype is None:
        raise TypeError(f"{name}: expected float32 or float64 values, got dtype {given}")
    if len(matrix.shape) != 2 or min(matrix.shape) < 1:
        raise ValueError(f"{name}: expected a 2-D array of shape (m workers, d parameters) with m, d >= 1, "
                         f"got shape {matrix.shape}")
    return matrix


def device_call(G: CudaMatrix, launch: Callable[..., Any], *shapes: Any) -> Any:
    """Allocate one array per shape (default: one of shape (d,)) with G's library, dtype and
    device, and call launch(*their device pointers) with that device current; the kernels run
    on the producer's stream G.stream. Returns the array, or a tuple of them for several
    shapes."""
    with G.device():
        outs = [G.empty(shape) for shape in (shapes or (G.shape[1],))]
        launch(*(o.data_ptr() if hasattr(o, "data_ptr") else o.data.ptr for o in outs))
    return outs[0] if len(outs) == 1 else tuple(outs)


# ---------------------------------------------------------------------------
# Other array libraries: DLPack and __cuda_array_interface__ producers.
# ---------------------------------------------------------------------------
_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_MANAGED = 1, 2, 13


def adopt(U: Any) -> Tuple[Any, Callable[[Any], Any]]:
    """(a zero-copy numpy / torch / cupy view of U, a function that turns a result back into U's
    kind). numpy arrays, torch tensors and cupy arrays pass through unchanged. Other arrays:
      - DLPack producers (__dlpack__, __dlpack_device__): a CPU array becomes a numpy view
        (np.from_dlpack), a CUDA array a torch view (torch.from_dlpack, on the producer's
        stream); results go back through the producer package's own `from_dlpack` when it has
        one (else they stay numpy / torch);
      - __cuda_array_interface__ producers (e.g. numba): a torch view (torch.as_tensor), and
        results stay torch tensors on the same device.
    Anything else passes through, for the callee's own type error."""
    if isinstance(U, np.ndarray) or _is_torch_tensor(U) or _is_cupy_array(U):
        return U, _identity
    if hasattr(U, "__dlpack__") and hasattr(U, "__dlpack_device__"):
        kind = U.__dlpack_device__()[0]
        if kind == _DLPACK_CPU:
            view = np.from_dlpack(U)
        elif kind in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED):
            import torch

            view = torch.from_dlpack(U)
        else:
            raise TypeError(f"U: got a DLPack array on device type {kind}; expected a CPU (1) or CUDA (2) array")
        return view, _back_through_dlpack(type(U))
    if hasattr(U, "__cuda_array_interface__"):
        import torch

        return torch.as_tensor(U, device="cuda"), _identity
    return U, _identity


def _back_through_dlpack(kind: type) -> Callable[[Any], Any]:
    import sys

    package = sys.modules.get(kind.__module__.split(".")[0])
    convert = getattr(package, "from_dlpack", None)
    if convert is None:
        return _identity
    return lambda result: convert(result) if hasattr(result, "__dlpack__") else result


def accepts_any_array(returns: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a public function whose first argument is U: U goes through `adopt`, and
    the result back to U's kind. returns: "array" (the result is one array), "each" (a tuple
    of arrays), "first" (a tuple whose first item is an array) or "none" (host values,
    e.g. numpy row indices, returned as they are)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(U: Any, *args: Any, **kwargs: Any) -> Any:
            view, back = adopt(U)
            result = fn(view, *args, **kwargs)
            if back is _identity or returns == "none":
                return result
            if returns == "array":
                return back(result)
            if returns == "each":
                items = [back(r) for r in result]
                return type(result)(*items) if hasattr(result, "_fields") else tuple(items)
            return (back(result[0]),) + tuple(result[1:])

        return wrapper

    return decorate


def as_int(value: Any, name: str) -> int:
    """An integer parameter; TypeError for floats, bools and other types."""
    if isinstance(value, bool):
        raise TypeError(f"{name}: expected an integer, got bool {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}") from None


def as_count(value: Any, name: str) -> int:
    """A non-negative integer parameter (c, beta)."""
    v = as_int(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def as_row_indices(rows: Any, m: int, name: str = "rows") -> list:
    """Row indices from a boolean mask of length m or a sequence of integer indices in [0, m)."""
    r = np.asarray(rows)
    if r.size == 0:
        raise ValueError(f"{name}: expected at least one row, got none")
    if r.dtype == np.bool_:
        if r.shape != (m,):
            raise ValueError(f"{name}: a boolean mask must have shape ({m},), got {r.shape}")
        idx = np.flatnonzero(r)
    elif r.dtype.kind in "iu" and r.ndim == 1:
        idx = r.astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= m):
            raise ValueError(f"{name}: indices must lie in [0, {m}), got min {idx.min()} and max {idx.max()}")
        if np.unique(idx).size != idx.size:
            raise ValueError(f"{name}: indices must be distinct")
    else:
        raise TypeError(f"{name}: expected a boolean mask of shape ({m},) or 1-D integer indices, "
                        f"got dtype {r.dtype} with shape {r.shape}")
    if idx.size == 0:
        raise ValueError(f"{name}: expected at least one row, got none")
    return idx.tolist()
