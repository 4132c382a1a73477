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
Nothing is copied on the way in. A backend is one class, `Backend`, over a native module
and an array library: the CPU backend is fedrobust._cpu with numpy, the CUDA backends are
fedrobust._cuda with torch or cupy. The two native modules have the same functions with the
same signatures (csrc/bindings: arrays in, outputs written into arrays the backend
allocates with A's library, host results as numpy arrays), so every backend runs the same
code here, with the same non-finite semantics (SPEC 13 item 15; the CUDA kernels give the
CPU's bits). `aggregators`, `stats`, `attacks` call only these methods.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple

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
    if type(U) is np.ndarray and U.dtype in _NUMPY_FLOATS and U.ndim == 2 and U.size:  # the common case
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
    if isinstance(U, np.ndarray):
        return _plain_numpy(U, name), _identity
    if _is_torch_tensor(U) or _is_cupy_array(U):
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


def _plain_numpy(U: np.ndarray, name: str) -> np.ndarray:
    """A numpy array as a plain, native-byte-order ndarray: a subclass (np.matrix) as a view of
    its data (results are plain arrays), floats in the other byte order as a native copy.
    Masked arrays are refused: their mask would be ignored."""
    if isinstance(U, np.ma.MaskedArray):
        raise TypeError(f"{name}: masked arrays are not supported (the mask would be ignored); pass "
                        "U.filled(...) or the rows you mean")
    A = np.asarray(U)
    if A.dtype.kind == "f" and not A.dtype.isnative:
        A = A.astype(A.dtype.newbyteorder("="))
    return A


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
# The backend: one native module and one array library
# ---------------------------------------------------------------------------
class Backend:
    """The methods every backend has. `native` is fedrobust._cpu or fedrobust._cuda (the same
    functions and signatures; the tests stand CPU code behind the CUDA one,
    tests/host_device.py); `lib` the array library of A (_Numpy, _TorchCuda, _Cupy), which
    allocates the outputs on A's device and hands arrays to `native` (`lib.arg`)."""

    def __init__(self, name: str, native: Any, lib: Any):
        self.name, self.native, self.lib = name, native, lib

    def _into(self, A: Any, call: Callable[..., Any], shape: Optional[Tuple[int, ...]] = None,
              count: int = 1) -> Any:
        """`count` new arrays of `shape` (default (d,)) in A's library, dtype and device, filled
        by call(A, *outputs) (as the native module takes them) with A's device current: the
        array, or a tuple of them."""
        L = self.lib
        shape = shape or (A.shape[1],)
        if L is _Numpy and count == 1:  # the common case, kept short: no device, the arrays themselves
            out = np.empty(shape, A.dtype)
            call(A, out)
            return out
        with L.device(A):
            if count == 1:
                out = L.empty(shape, A)
                call(L.arg(A), L.arg(out))
                return out
            outs = tuple(L.empty(shape, A) for _ in range(count))
            call(L.arg(A), *(L.arg(o) for o in outs))
        return outs

    def _host(self, A: Any, call: Callable[[Any], Any]) -> Any:
        """call(A as the native module takes it) with A's device current: a host result."""
        with self.lib.device(A):
            return call(self.lib.arg(A))

    # -- aggregation --------------------------------------------------------
    def mean(self, A: Any, rows: Optional[List[int]] = None) -> Any:
        """(d,) mean over `rows` (all by default), summed in ascending row order in double."""
        return self._into(A, lambda u, out: self.native.mean(u, rows, out))

    def median(self, A: Any, rows: Optional[List[int]] = None) -> Any:
        """(d,) median of `rows` (all by default)."""
        return self._into(A, lambda u, out: self.native.median(u, rows, out))

    def trimmed_mean(self, A: Any, beta: int, rows: Optional[List[int]] = None) -> Any:
        """(d,) trimmed mean of `rows` (all by default), summed in ascending row order."""
        return self._into(A, lambda u, out: self.native.trimmed_mean(u, beta, rows, out))

    def leave_one_out_median(self, A: Any) -> Any:
        """(m, d): row i the median of the rows of A other than row i (m >= 2)."""
        return self._into(A, lambda u, out: self.native.leave_one_out_median(u, out), shape=tuple(A.shape))

    def leave_one_out_trimmed_mean(self, A: Any, beta: int) -> Any:
        """(m, d): row i the trimmed mean (beta trimmed, 2 beta < m - 1) of the rows of A other
        than row i, with the rule's bits."""
        return self._into(A, lambda u, out: self.native.leave_one_out_trimmed_mean(u, beta, out),
                          shape=tuple(A.shape))

    def coordinate_stats(self, A: Any, rows: Optional[List[int]] = None) -> Tuple[Any, ...]:
        """(mean, population std, min, max), each (d,), over `rows`; NaN counts as +Inf."""
        return self._into(A, lambda u, *out: self.native.coordinate_stats(u, rows, *out), count=4)

    def pairwise_distances(self, A: Any, squared: bool, rows: Optional[List[int]] = None) -> Any:
        """(k, k) distances between `rows` (all m by default) in that order, in A's dtype."""
        k = A.shape[0] if rows is None else len(rows)
        return self._into(A, lambda u, out: self.native.pairwise_distances(u, squared, rows, out), (k, k))

    def sq_distances(self, A: Any, rows: Optional[List[int]] = None) -> np.ndarray:
        """(k, k) squared distances between `rows` in float64, a host array."""
        return self._host(A, lambda u: self.native.sq_distances(u, rows))

    def krum_select(self, A: Any, c: int, multi: int, squared: bool) -> Tuple[np.ndarray, np.ndarray]:
        """(the `multi` rows of smallest Krum score, ascending by score, host int64; the (m,)
        float64 scores, host)."""
        return self._host(A, lambda u: self.native.krum_select(u, c, multi, squared))

    def krum_choose(self, A: Any, c: int, multi: int, squared: bool) -> np.ndarray:
        """The rows krum_select picks, host int64, without the scores: on the CPU for float32
        rows, the bulk of the distances from a quantized Gram matrix with rigorous bounds and
        exact direct distances only for the rows that can win (same choice, bit for bit)."""
        return self._host(A, lambda u: self.native.krum_choose(u, c, multi, squared))[0]

    def krum_scores(self, A: Any, c: int, squared: bool) -> Any:
        """(m,) Krum scores in A's dtype and library."""
        scores = self.krum_select(A, c, 1, squared)[1]
        with self.lib.device(A):
            return self.lib.from_host(scores, A)

    def krum_scores_from_distances(self, sq: np.ndarray, c: int, squared: bool) -> np.ndarray:
        """(n,) float64 Krum scores from (n, n) host float64 squared distances (any backend's):
        a host computation, on the CPU module."""
        return cpu.krum_scores_from_distances(np.ascontiguousarray(sq, dtype=np.float64), c, squared)

    def krum_leave_one_out_scores(self, sq: np.ndarray, c: int, squared: bool) -> np.ndarray:
        """(n, n) float64: row i the Krum scores of the n - 1 rows other than i (+Inf at i),
        from (n, n) host float64 squared distances; a host computation, on the CPU module."""
        return cpu.krum_leave_one_out_scores(np.ascontiguousarray(sq, dtype=np.float64), c, squared)

    def bulyan_select_from_distances(self, sq: np.ndarray, c: int, squared: bool) -> np.ndarray:
        """(n - 2c,) host int64: Bulyan's selection, in selection order, from (n, n) host float64
        squared distances; a host computation, on the CPU module."""
        return cpu.bulyan_select_from_distances(np.ascontiguousarray(sq, dtype=np.float64), c, squared)

    def bulyan_leave_one_out_selections(self, sq: np.ndarray, c: int, squared: bool) -> np.ndarray:
        """(n, n - 1 - 2c) host int64: row i Bulyan's selection on the n - 1 rows other than i
        (indices of the n rows, in selection order), from (n, n) host float64 squared
        distances; a host computation, on the CPU module."""
        return cpu.bulyan_leave_one_out_selections(np.ascontiguousarray(sq, dtype=np.float64), c, squared)

    def krum(self, A: Any, c: int, multi: int, squared: bool) -> Tuple[Any, np.ndarray]:
        """(Krum's aggregate (d,), the `multi` selected rows, host int64 ascending by score):
        the selected row itself, or the mean of the selected rows (Multi-Krum)."""
        rows = self.krum_choose(A, c, multi, squared)
        if multi == 1:
            return self.lib.copy(A[int(rows[0])]), rows
        return self.mean(A, rows.tolist()), rows

    def bulyan(self, A: Any, c: int, squared: bool) -> Tuple[Any, np.ndarray]:
        """(Bulyan's aggregate (d,), the selected rows in selection order, host int64)."""
        chosen: list = []
        out = self._into(A, lambda u, out: chosen.append(self.native.bulyan(u, c, squared, out)))
        return out, chosen[0]

    def closest_to_median_mean(self, A: Any, gamma: int, rows: List[int]) -> Any:
        """(d,) Bulyan's second stage over `rows`: per coordinate, the mean of the gamma values
        closest to their median."""
        return self._into(A, lambda u, out: self.native.closest_to_median_mean(u, gamma, rows, out))

    def nonfinite_rows(self, A: Any) -> np.ndarray:
        """(m,) host bool: the rows that hold a NaN or an Inf."""
        return self._host(A, self.native.nonfinite_rows)

    def all_finite(self, x: Any) -> bool:
        return bool(self.lib.isfinite(x).all())

    def overflow_column(self, A: Any, out: Any, rows: Optional[List[int]] = None) -> Optional[int]:
        """The first coordinate j where out (d,) is non-finite but every A[rows, j] is finite (a
        float64 sum that overflowed), or None. One pass over out; A is read only at
        non-finite coordinates."""
        if not str(A.dtype).endswith("float64") or self.all_finite(out):
            return None
        cols = np.flatnonzero(~np.asarray(self.lib.to_host(self.lib.isfinite(out)))).tolist()
        values = A[:, cols] if rows is None else A[:, cols][rows]
        finite = np.asarray(self.lib.to_host(self.lib.isfinite(values).all(0)))
        hits = np.asarray(cols)[finite]
        return int(hits[0]) if hits.size else None

    # -- attacks --------------------------------------------------------------
    def craft(self, A: Any, rows: List[int], mode: str, ids: Sequence[int], seed: int, round: int,
              direction: Any = None, base: Any = None, b: float = 2.0,
              sigma: Tuple[float, float] = (3.0, 4.0)) -> Tuple[Any, Any]:
        """The trim / Gaussian crafting kernel: (values (len(ids), d) in A's dtype, the direction
        used (d,) int8) from the per-coordinate statistics of A[rows]."""
        L = self.lib
        out_ids = [int(i) for i in ids]
        with L.device(A):
            s = None if direction is None else L.arg(L.int8(direction, A))
            w = None if base is None else L.arg(L.cast(base, A))
            values = L.empty((len(out_ids), A.shape[1]), A)
            used = L.empty((A.shape[1],), A, "int8")
            self.native.craft_coordinates(L.arg(A), list(rows), mode, out_ids, seed, round, s, w, b, sigma[0],
                                          sigma[1], L.arg(values), L.arg(used))
        return values, used

    def norms_and_dots(self, A: Any, s: Any, rows: Optional[List[int]] = None) -> Tuple[np.ndarray, ...]:
        """(||u_i||^2, <u_i, s>), each (k,) host float64, for `rows` (all m by default)."""
        with self.lib.device(A):
            signs = self.lib.arg(self.lib.int8(s, A))
            return self.native.norms_and_dots(self.lib.arg(A), signs, rows)

    def krum_craft(self, A: Any, s: Any, lam: float, eps: float, seed: int, round: int,
                   ids: Sequence[int]) -> Any:
        """The Krum attack's len(ids) sent updates (len(ids), d) in A's dtype."""
        L = self.lib
        out_ids = [int(i) for i in ids]
        with L.device(A):
            signs = L.int8(s, A)
            out = L.empty((len(out_ids), A.shape[1]), A)
            self.native.krum_craft(L.arg(signs), float(lam), float(eps), seed, round, out_ids, L.arg(out))
        return out

    # -- elementwise helpers of the attacks -------------------------------------
    def signs(self, x: Any) -> Any:
        """(d,) int8 signs; NaN counts as 0."""
        return self.lib.int8(x > 0, x) - self.lib.int8(x < 0, x)

    def ones(self, A: Any) -> Any:
        """(d,) int8 ones: the direction s = 1 of the deviation goal."""
        return self.lib.int8(np.ones(A.shape[1], dtype=np.int8), A)

    def float64(self, x: Any) -> Any:
        return self.lib.float64(x)

    def vector(self, x: Any, like: Any) -> Any:
        """x (d,) (any array the library can read) in like's library, dtype and device."""
        return self.lib.cast(x, like)

    def fraction(self, mask: Any) -> float:
        """The fraction of True entries of a boolean array."""
        return float(mask.sum()) / max(int(np.prod(mask.shape)), 1)


# ---------------------------------------------------------------------------
# The array libraries: what a backend needs of each
# ---------------------------------------------------------------------------
_NO_DEVICE = contextlib.nullcontext()


class _Numpy:
    """numpy arrays (host memory): the CPU backend's library."""

    @staticmethod
    def arg(x: np.ndarray) -> np.ndarray:
        return x

    @staticmethod
    def empty(shape: Tuple[int, ...], like: np.ndarray, dtype: Optional[str] = None) -> np.ndarray:
        return np.empty(shape, dtype=dtype or like.dtype)

    @staticmethod
    def device(like: Any) -> Any:
        return _NO_DEVICE

    @staticmethod
    def from_host(a: np.ndarray, like: np.ndarray) -> np.ndarray:
        """a rounded to like's dtype (beyond its range: +-Inf, as the kernels round)."""
        with np.errstate(over="ignore"):
            return np.asarray(a, dtype=like.dtype)

    @staticmethod
    def isfinite(x: np.ndarray) -> np.ndarray:
        return np.isfinite(x)

    @staticmethod
    def to_host(x: np.ndarray) -> np.ndarray:
        return x

    @staticmethod
    def int8(s: Any, like: Any) -> np.ndarray:
        return np.ascontiguousarray(_host_values(s), dtype=np.int8)

    @staticmethod
    def cast(x: Any, like: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(_host_values(x), dtype=like.dtype)

    @staticmethod
    def float64(x: Any) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def copy(x: np.ndarray) -> np.ndarray:
        return x.copy()


def _host_values(x: Any) -> Any:
    """x, or a CPU torch tensor's numpy view."""
    return x.detach().numpy() if _is_torch_tensor(x) else x


class _DeviceArray:
    """A CUDA array as the native module takes it: its __cuda_array_interface__ (version 3)
    with the stream its producer's work runs on (1 for the legacy default stream). It holds
    the array itself, so a temporary (a direction cast to int8) lives until the kernel has
    been given its memory, not just its address."""

    __slots__ = ("__cuda_array_interface__", "array")

    def __init__(self, array: Any, interface: dict, stream: int):
        self.array = array
        self.__cuda_array_interface__ = {**interface, "version": 3, "stream": stream or 1}


class _TorchCuda:
    """torch CUDA tensors: a CUDA backend's library."""

    @staticmethod
    def arg(x: Any) -> _DeviceArray:
        import torch

        return _DeviceArray(x, x.__cuda_array_interface__, torch.cuda.current_stream(x.device).cuda_stream)

    @staticmethod
    def empty(shape: Tuple[int, ...], like: Any, dtype: Optional[str] = None) -> Any:
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype) if dtype else like.dtype, device=like.device)

    @staticmethod
    def device(like: Any) -> Any:
        import torch

        return torch.cuda.device(like.device)

    @staticmethod
    def from_host(a: np.ndarray, like: Any) -> Any:
        import torch

        return torch.as_tensor(a, dtype=like.dtype, device=like.device)

    @staticmethod
    def isfinite(x: Any) -> Any:
        return x.isfinite()

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        return x.cpu().numpy()

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
    """cupy arrays: a CUDA backend's library."""

    @staticmethod
    def arg(x: Any) -> _DeviceArray:
        import cupy

        return _DeviceArray(x, x.__cuda_array_interface__, cupy.cuda.get_current_stream(x.device.id).ptr)

    @staticmethod
    def empty(shape: Tuple[int, ...], like: Any, dtype: Optional[str] = None) -> Any:
        import cupy

        with like.device:
            return cupy.empty(shape, dtype=dtype or like.dtype)

    @staticmethod
    def device(like: Any) -> Any:
        return like.device

    @staticmethod
    def from_host(a: np.ndarray, like: Any) -> Any:
        import cupy

        with like.device:
            return cupy.asarray(a, dtype=like.dtype)

    @staticmethod
    def isfinite(x: Any) -> Any:
        import cupy

        return cupy.isfinite(x)

    @staticmethod
    def to_host(x: Any) -> np.ndarray:
        return x.get()

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


CPU = Backend("cpu", cpu, _Numpy)


def _cuda_backend(lib: Any, name: str) -> Backend:
    if cuda is None:
        raise TypeError(f"{name}: got a CUDA array, but fedrobust was built without its CUDA module "
                        "(see fedrobust.backend_info()['cuda']); pass a CPU array")
    return _CUDA_BACKENDS[lib]


_CUDA_BACKENDS = {lib: Backend("cuda", cuda, lib) for lib in (_TorchCuda, _Cupy)}
