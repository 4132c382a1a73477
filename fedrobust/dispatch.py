"""The one place that looks at array types: which backend computes on an array, and how a
result goes back to the caller's type.

    A, backend, wrap = dispatch.matrix(U)      # U: any (m, d) float32 / float64 array
    out = wrap(backend.median(A))              # U's type, dtype and device

`matrix` accepts
  - numpy arrays and CPU torch tensors            -> CPU backend (fedrobust._cpu), A a numpy view;
  - torch CUDA tensors and cupy arrays             -> CUDA backend (fedrobust._cuda), A the array;
  - other DLPack producers (CPU: numpy view, CUDA: torch view) and __cuda_array_interface__
    producers (a torch view); results go back through the producer package's own
    `from_dlpack` when it has one.
Nothing is copied on the way in. Both backends have the same methods with the same meaning
and the same non-finite semantics (SPEC 13 item 15; the CUDA kernels give the CPU's bits):
arrays in, arrays of A's library out, host results (row indices, Krum scores, float64
distances for the attacks' searches) as numpy arrays. `aggregators`, `stats`, `attacks`
call only these methods.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from fedrobust._native import cpu, cuda

Wrap = Callable[[Any], Any]
FLOAT_DTYPES = ("float32", "float64")
_NUMPY_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_DLPACK_CPU, _DLPACK_CUDA, _DLPACK_CUDA_MANAGED = 1, 2, 13


def _identity(x: Any) -> Any:
    return x


def _type_name(x: Any) -> str:
    return f"{type(x).__module__}.{type(x).__qualname__}"


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(x, "device")


def _is_cupy_array(x: Any) -> bool:
    return type(x).__module__.startswith("cupy")


# ---------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------
def matrix(U: Any, name: str = "U") -> Tuple[Any, Backend, Wrap]:
    """(A, backend, wrap) for an (m, d) array U: A is a zero-copy view of U that `backend`
    computes on, wrap(result) turns a result of A's library back into U's type.

    Raises TypeError for other types, non-float dtypes and CUDA arrays without the CUDA module;
    ValueError for a shape other than (m >= 1, d >= 1) or CUDA arrays without a visible device.
    """
    if isinstance(U, np.ndarray) and U.dtype in _NUMPY_FLOATS and U.ndim == 2 and U.size:  # the common case
        return U, CPU, _identity
    view, wrap = _adopt(U, name)
    if isinstance(view, np.ndarray):
        return _checked(view, str(view.dtype), str(view.dtype), view.shape, name), CPU, wrap
    if _is_torch_tensor(view):
        t = view.detach()
        if t.device.type not in ("cpu", "cuda"):
            raise TypeError(f"{name}: got a torch tensor on {t.device}; expected a tensor on the CPU or a CUDA "
                            "device; pass a CPU tensor")
        t = _checked(t, str(t.dtype).replace("torch.", ""), str(t.dtype), tuple(t.shape), name)
        if t.device.type == "cpu":
            return t.numpy(), CPU, _chain(_torch_from_numpy, wrap)
        return t, _cuda_backend(_TorchCuda, name), wrap
    if _is_cupy_array(view):
        view = _checked(view, str(view.dtype), str(view.dtype), tuple(view.shape), name)
        return view, _cuda_backend(_Cupy, name), wrap
    raise TypeError(f"{name}: expected a numpy array or a torch tensor (CPU or CUDA), a cupy array or a DLPack "
                    f"producer, of shape (m workers, d parameters); got {_type_name(U)}")


def backend_of(A: Any) -> Backend:
    """The backend of an array that `matrix` returned (or any array of the same kind)."""
    return CPU if isinstance(A, np.ndarray) else matrix(A)[1]


def _checked(A: Any, dtype: str, given: str, shape: Tuple[int, ...], name: str) -> Any:
    """A, once its dtype (native-endian float32 / float64) and shape (m >= 1, d >= 1) are checked."""
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64 values, got dtype {given}")
    if len(shape) != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (m workers, d parameters), got shape "
                         f"{tuple(shape)}")
    if min(shape) < 1:
        raise ValueError(f"{name}: expected at least one row and one column, got shape {tuple(shape)}")
    return A


def _torch_from_numpy(a: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(a)


def _chain(first: Wrap, then: Wrap) -> Wrap:
    return first if then is _identity else (lambda x: then(first(x)))


def _adopt(U: Any, name: str) -> Tuple[Any, Wrap]:
    """(a zero-copy numpy / torch / cupy view of U, how to turn a result back into U's kind).
    numpy arrays, torch tensors and cupy arrays pass through; DLPack and
    __cuda_array_interface__ producers become views; anything else passes through for
    `matrix`'s type error."""
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
            raise TypeError(f"{name}: got a DLPack array on device type {kind}; expected a CPU (1) or CUDA (2) array")
        return view, _back_through_dlpack(type(U))
    if hasattr(U, "__cuda_array_interface__"):
        import torch

        return torch.as_tensor(U, device="cuda"), _identity
    return U, _identity


def _back_through_dlpack(kind: type) -> Wrap:
    package = sys.modules.get(kind.__module__.split(".")[0])
    convert = getattr(package, "from_dlpack", None)
    if convert is None:
        return _identity
    return lambda result: convert(result) if hasattr(result, "__dlpack__") else result


def wrap_each(wrap: Wrap, results: Sequence[Any]) -> Tuple[Any, ...]:
    """wrap applied to every item of a tuple (a NamedTuple keeps its type)."""
    items = [wrap(r) for r in results]
    return type(results)(*items) if hasattr(results, "_fields") else tuple(items)


# ---------------------------------------------------------------------------
# The CPU backend: numpy arrays, fedrobust._cpu
# ---------------------------------------------------------------------------
class CpuBackend:
    """The methods every backend has, on numpy arrays with the CPU kernels (csrc/cpu)."""

    name = "cpu"

    # -- aggregation --------------------------------------------------------
    def mean(self, A: np.ndarray, rows: Optional[List[int]] = None) -> np.ndarray:
        """(d,) mean over `rows` (all by default), summed in ascending row order in double."""
        return cpu.mean(A, None if rows is None else sorted(rows))

    def median(self, A: np.ndarray) -> np.ndarray:
        return cpu.median(A)

    def trimmed_mean(self, A: np.ndarray, beta: int) -> np.ndarray:
        return cpu.trimmed_mean(A, beta)

    def coordinate_stats(self, A: np.ndarray, rows: Optional[List[int]] = None) -> Tuple[np.ndarray, ...]:
        """(mean, population std, min, max), each (d,), over `rows`; NaN counts as +Inf."""
        return tuple(cpu.coordinate_stats(A, rows))

    def pairwise_distances(self, A: np.ndarray, squared: bool, rows: Optional[List[int]] = None) -> np.ndarray:
        """(k, k) distances between `rows` (all m by default) in that order, in A's dtype."""
        return cpu.pairwise_distances(A, squared, rows)

    def sq_distances(self, A: np.ndarray, rows: Optional[List[int]] = None) -> np.ndarray:
        """(k, k) squared distances between `rows` in float64, a host array."""
        return cpu.pairwise_distances(A, True, rows, True)

    def krum_scores(self, A: np.ndarray, c: int, squared: bool) -> np.ndarray:
        """(m,) Krum scores in A's dtype."""
        return cpu.krum_scores(A, c, squared)

    def krum_scores_from_distances(self, sq: np.ndarray, c: int, squared: bool) -> np.ndarray:
        """(n,) float64 Krum scores from (n, n) host float64 squared distances (any backend's)."""
        return cpu.krum_scores_from_distances(np.ascontiguousarray(sq, dtype=np.float64), c, squared)

    def krum(self, A: np.ndarray, c: int, multi: int, squared: bool) -> Tuple[np.ndarray, np.ndarray]:
        """(Krum's aggregate (d,), the `multi` selected rows, host int64 ascending by score)."""
        aggregate, chosen, _ = cpu.krum(A, c, multi, squared)
        return aggregate, chosen

    def bulyan(self, A: np.ndarray, c: int, squared: bool) -> Tuple[np.ndarray, np.ndarray]:
        """(Bulyan's aggregate (d,), the selected rows in selection order, host int64)."""
        return cpu.bulyan(A, c, squared)

    def nonfinite_rows(self, A: np.ndarray) -> np.ndarray:
        """(m,) host bool: the rows that hold a NaN or an Inf."""
        return cpu.nonfinite_rows(A)

    def all_finite(self, x: np.ndarray) -> bool:
        return bool(np.isfinite(x).all())

    # -- attacks --------------------------------------------------------------
    def craft(self, A: np.ndarray, rows: List[int], mode: str, ids: np.ndarray, seed: int, round: int,
              direction: Any = None, base: Any = None, b: float = 2.0,
              sigma: Tuple[float, float] = (3.0, 4.0)) -> Tuple[np.ndarray, np.ndarray]:
        """The trim / Gaussian crafting kernel: (values (len(ids), d) in A's dtype, the direction
        used (d,) int8) from the per-coordinate statistics of A[rows]."""
        s = None if direction is None else _int8(direction)
        w = None if base is None else np.ascontiguousarray(base, dtype=A.dtype)
        return cpu.craft_coordinates(A, rows, mode, ids, seed, round, direction=s, base=w, b=b,
                                     sigma_lo=sigma[0], sigma_hi=sigma[1])

    def norms_and_dots(self, A: np.ndarray, s: Any, rows: Optional[List[int]] = None) -> Tuple[np.ndarray, ...]:
        """(||u_i||^2, <u_i, s>), each (k,) host float64, for `rows` (all m by default)."""
        return cpu.norms_and_dots(A, _int8(s), rows)

    def krum_craft(self, A: np.ndarray, s: Any, lam: float, eps: float, seed: int, round: int,
                   ids: Sequence[int]) -> np.ndarray:
        """The Krum attack's len(ids) sent updates (len(ids), d) in A's dtype."""
        return cpu.krum_craft(_int8(s), lam, eps, seed, round, np.asarray(ids, dtype=np.int64), A.dtype)

    # -- elementwise helpers of the attacks -------------------------------------
    def signs(self, x: np.ndarray) -> np.ndarray:
        """(d,) int8 signs; NaN counts as 0."""
        return (x > 0).astype(np.int8) - (x < 0).astype(np.int8)

    def ones(self, A: np.ndarray) -> np.ndarray:
        """(d,) int8 ones: the direction s = 1 of the deviation goal."""
        return np.ones(A.shape[1], dtype=np.int8)

    def float64(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def vector(self, x: Any, like: np.ndarray) -> np.ndarray:
        """x (d,) (numpy or a CPU torch tensor) as a numpy array in like's dtype."""
        if _is_torch_tensor(x):
            x = x.detach().numpy()
        return np.asarray(x, dtype=like.dtype)

    def fraction(self, mask: np.ndarray) -> float:
        """The fraction of True entries of a boolean array."""
        return float(np.mean(mask))


def _int8(s: Any) -> np.ndarray:
    """A direction (d,) as the contiguous int8 array the CPU kernels read."""
    return np.ascontiguousarray(s, dtype=np.int8)


CPU = CpuBackend()


# ---------------------------------------------------------------------------
# The CUDA backend: torch CUDA tensors or cupy arrays, fedrobust._cuda
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class DeviceMatrix:
    """An (m, d) device array as the CUDA bindings take it: pointer, shape, element strides,
    dtype ("float32" / "float64") and the producer's current stream."""

    data: int
    shape: Tuple[int, int]
    strides: Tuple[int, int]
    dtype: str
    stream: int

    @property
    def args(self) -> tuple:
        """(data, m, d, row_stride, col_stride): how every binding takes the matrix."""
        return (self.data, *self.shape, *self.strides)


class _TorchCuda:
    """torch CUDA tensors: what the CUDA backend needs of an array library."""

    @staticmethod
    def matrix(A: Any) -> DeviceMatrix:
        import torch

        return DeviceMatrix(A.data_ptr(), tuple(A.shape), tuple(A.stride()), str(A.dtype).replace("torch.", ""),
                            torch.cuda.current_stream(A.device).cuda_stream)

    @staticmethod
    def pointer(x: Any) -> int:
        return x.data_ptr()

    @staticmethod
    def empty(shape: Any, like: Any) -> Any:
        import torch

        return torch.empty(shape, dtype=like.dtype, device=like.device)

    @staticmethod
    def empty_int8(n: int, like: Any) -> Any:
        import torch

        return torch.empty(n, dtype=torch.int8, device=like.device)

    @staticmethod
    def from_host(a: np.ndarray, like: Any) -> Any:
        import torch

        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    @staticmethod
    def device(like: Any) -> Any:
        import torch

        return torch.cuda.device(like.device)

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        return x.cpu().numpy()

    @staticmethod
    def isfinite(x: Any) -> Any:
        return x.isfinite()

    @staticmethod
    def int8(s: Any, like: Any) -> Any:
        import torch

        return torch.as_tensor(s).to(device=like.device, dtype=torch.int8).contiguous()

    @staticmethod
    def cast(x: Any, like: Any) -> Any:
        """x in like's dtype, contiguous, on like's device."""
        import torch

        return torch.as_tensor(x).to(device=like.device, dtype=like.dtype).contiguous()

    @staticmethod
    def float64(x: Any) -> Any:
        return x.double()

    @staticmethod
    def copy(x: Any) -> Any:
        return x.clone()


class _Cupy:
    """cupy arrays: what the CUDA backend needs of an array library."""

    @staticmethod
    def matrix(A: Any) -> DeviceMatrix:
        import cupy

        return DeviceMatrix(A.data.ptr, tuple(A.shape), tuple(s // A.itemsize for s in A.strides),
                            np.dtype(A.dtype).name, cupy.cuda.get_current_stream(A.device.id).ptr)

    @staticmethod
    def pointer(x: Any) -> int:
        return x.data.ptr

    @staticmethod
    def empty(shape: Any, like: Any) -> Any:
        import cupy

        with like.device:
            return cupy.empty(shape, dtype=like.dtype)

    @staticmethod
    def empty_int8(n: int, like: Any) -> Any:
        import cupy

        with like.device:
            return cupy.empty(n, dtype=cupy.int8)

    @staticmethod
    def from_host(a: np.ndarray, like: Any) -> Any:
        import cupy

        with like.device:
            return cupy.asarray(a, dtype=like.dtype)

    @staticmethod
    def device(like: Any) -> Any:
        return like.device

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        return x.get()

    @staticmethod
    def isfinite(x: Any) -> Any:
        import cupy

        return cupy.isfinite(x)

    @staticmethod
    def int8(s: Any, like: Any) -> Any:
        import cupy

        with like.device:
            return cupy.ascontiguousarray(cupy.asarray(s), dtype=cupy.int8)

    @staticmethod
    def cast(x: Any, like: Any) -> Any:
        import cupy

        with like.device:
            return cupy.ascontiguousarray(cupy.asarray(x), dtype=like.dtype)

    @staticmethod
    def float64(x: Any) -> Any:
        return x.astype("float64")

    @staticmethod
    def copy(x: Any) -> Any:
        return x.copy()


def _cuda_backend(lib: Any, name: str) -> CudaBackend:
    if cuda is None:
        raise TypeError(f"{name}: got a CUDA array, but fedrobust was built without its CUDA module "
                        "(see fedrobust.backend_info()['cuda']); pass a CPU array")
    return CudaBackend(cuda, lib)


class CudaBackend:
    """The methods of CpuBackend on CUDA arrays of one library (torch or cupy), with the CUDA
    kernels (csrc/cuda). `native` is fedrobust._cuda (the tests stand the CPU code behind
    it, tests/host_device.py). Outputs are allocated with A's library on A's device; the
    kernels run on the producer's current stream."""

    name = "cuda"

    def __init__(self, native: Any, lib: Any):
        self.native, self.lib = native, lib

    def _outputs(self, A: Any, launch: Callable[..., Any], *shapes: Any) -> Any:
        """One new array per shape (default (d,)) in A's library, dtype and device;
        launch(*their pointers) runs with A's device current. The array, or a tuple of them."""
        with self.lib.device(A):
            outs = [self.lib.empty(shape, A) for shape in (shapes or (A.shape[1],))]
            launch(*(self.lib.pointer(o) for o in outs))
        return outs[0] if len(outs) == 1 else tuple(outs)

    def _call(self, A: Any, fn: Callable[[], Any]) -> Any:
        with self.lib.device(A):
            return fn()

    # -- aggregation --------------------------------------------------------
    def mean(self, A: Any, rows: Optional[List[int]] = None) -> Any:
        G = self.lib.matrix(A)
        idx = [] if rows is None else sorted(rows)
        return self._outputs(A, lambda out: self.native.mean(*G.args, idx, G.dtype, out, G.stream))

    def median(self, A: Any) -> Any:
        G = self.lib.matrix(A)
        return self._outputs(A, lambda out: self.native.median(*G.args, G.dtype, out, G.stream))

    def trimmed_mean(self, A: Any, beta: int) -> Any:
        G = self.lib.matrix(A)
        return self._outputs(A, lambda out: self.native.trimmed_mean(*G.args, beta, G.dtype, out, G.stream))

    def coordinate_stats(self, A: Any, rows: Optional[List[int]] = None) -> Tuple[Any, ...]:
        G = self.lib.matrix(A)
        idx = [] if rows is None else sorted(rows)
        d = A.shape[1]
        return self._outputs(A, lambda *out: self.native.coordinate_stats(*G.args, idx, G.dtype, *out, G.stream),
                             d, d, d, d)

    def pairwise_distances(self, A: Any, squared: bool, rows: Optional[List[int]] = None) -> Any:
        if rows is not None:  # from a gathered copy of the rows
            return self.pairwise_distances(A[list(rows)], squared)
        G = self.lib.matrix(A)
        m = A.shape[0]
        return self._outputs(A, lambda out: self.native.pairwise_distances(*G.args, G.dtype, squared, out, G.stream),
                             (m, m))

    def sq_distances(self, A: Any, rows: Optional[List[int]] = None) -> np.ndarray:
        sub = A if rows is None else A[list(rows)]
        G = self.lib.matrix(sub)
        return self._call(A, lambda: self.native.sq_distances(*G.args, G.dtype, G.stream))

    def _krum_scores(self, A: Any, c: int, squared: bool) -> Tuple[int, np.ndarray]:
        """(the chosen row, the (m,) float64 scores on the host) of Krum on the device."""
        G = self.lib.matrix(A)
        chosen, scores = self._call(A, lambda: self.native.krum_select(*G.args, G.dtype, c, squared, G.stream))
        return int(chosen), np.asarray(scores, dtype=np.float64)

    def krum_scores(self, A: Any, c: int, squared: bool) -> Any:
        scores = self._krum_scores(A, c, squared)[1]
        return self._call(A, lambda: self.lib.from_host(scores, A))

    def krum(self, A: Any, c: int, multi: int, squared: bool) -> Tuple[Any, np.ndarray]:
        self.native.check_multi_krum(A.shape[0], c, multi)  # the CPU's check and message
        chosen, scores = self._krum_scores(A, c, squared)
        if multi == 1:
            return self.lib.copy(A[chosen]), np.array([chosen], dtype=np.int64)
        rows = np.argsort(scores, kind="stable")[:multi].astype(np.int64)
        return self.mean(A, rows.tolist()), rows

    def bulyan(self, A: Any, c: int, squared: bool) -> Tuple[Any, np.ndarray]:
        G = self.lib.matrix(A)
        chosen: list = []
        out = self._outputs(A, lambda out: chosen.extend(self.native.bulyan(*G.args, c, squared, G.dtype, out,
                                                                            G.stream)))
        return out, np.array(chosen, dtype=np.int64)

    def nonfinite_rows(self, A: Any) -> np.ndarray:
        """The array library's own elementwise test, on the device."""
        finite = self.lib.isfinite(A).all(1)
        return ~self.lib.to_host(finite)

    def all_finite(self, x: Any) -> bool:
        return bool(self.lib.isfinite(x).all())

    # -- attacks --------------------------------------------------------------
    def craft(self, A: Any, rows: List[int], mode: str, ids: np.ndarray, seed: int, round: int,
              direction: Any = None, base: Any = None, b: float = 2.0,
              sigma: Tuple[float, float] = (3.0, 4.0)) -> Tuple[Any, Any]:
        G = self.lib.matrix(A)
        s = None if direction is None else self.lib.int8(direction, A)
        w = None if base is None else self.lib.cast(base, A)
        out_ids = [int(i) for i in ids]
        with self.lib.device(A):
            values = self.lib.empty((len(out_ids), A.shape[1]), A)
            used = self.lib.empty_int8(A.shape[1], A)
            self.native.craft_coordinates(*G.args, list(rows), mode, out_ids, seed, round,
                                          0 if s is None else self.lib.pointer(s),
                                          0 if w is None else self.lib.pointer(w), b, sigma[0], sigma[1], G.dtype,
                                          self.lib.pointer(values), self.lib.pointer(used), G.stream)
        return values, used

    def norms_and_dots(self, A: Any, s: Any, rows: Optional[List[int]] = None) -> Tuple[np.ndarray, ...]:
        sub = A if rows is None else A[list(rows)]
        G = self.lib.matrix(sub)
        s_dev = self.lib.int8(s, A)
        if tuple(s_dev.shape) != (A.shape[1],):
            raise ValueError(f"direction: expected {A.shape[1]} signs (one per column of U), "
                             f"got shape {tuple(s_dev.shape)}")
        return self._call(A, lambda: self.native.norms_and_dots(*G.args, G.dtype, self.lib.pointer(s_dev), G.stream))

    def krum_craft(self, A: Any, s: Any, lam: float, eps: float, seed: int, round: int, ids: Sequence[int]) -> Any:
        G = self.lib.matrix(A)
        s_dev = self.lib.int8(s, A)
        d = A.shape[1]
        out_ids = [int(i) for i in ids]
        return self._outputs(A, lambda out: self.native.krum_craft(self.lib.pointer(s_dev), d, float(lam), float(eps),
                                                                   seed, round, out_ids, G.dtype, out, G.stream),
                             (len(out_ids), d))

    # -- elementwise helpers of the attacks -------------------------------------
    def signs(self, x: Any) -> Any:
        return self.lib.int8(x > 0, x) - self.lib.int8(x < 0, x)

    def ones(self, A: Any) -> Any:
        return self.lib.int8(np.ones(A.shape[1], dtype=np.int8), A)

    def float64(self, x: Any) -> Any:
        return self.lib.float64(x)

    def vector(self, x: Any, like: Any) -> Any:
        return self.lib.cast(x, like)

    def fraction(self, mask: Any) -> float:
        return float(mask.sum()) / max(int(np.prod(mask.shape)), 1)


Backend = Union[CpuBackend, CudaBackend]  # the same methods
