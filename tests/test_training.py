"""The native LR training step (csrc/cpu/training.cpp) against its float64 twin
(reference.lr_sgd_step) and against the autograd path every model has."""
import numpy as np
import pytest
import torch

from fedrobust import models, reference
from fedrobust._native import cpu

from conftest import SIMD_LEVELS, run_with_simd, run_with_threads


def make_case(m, b, features, classes, n=200, dtype=np.float32, seed=0, empty_frac=0.2):
    rng = np.random.default_rng(seed)
    X = rng.random((n, features)).astype(dtype)
    y = rng.integers(0, classes, n).astype(np.int64)
    w = (0.1 * rng.standard_normal(features * classes + classes)).astype(dtype)
    batches = rng.integers(0, n, (m, b)).astype(np.int64)
    batches[rng.random((m, b)) < empty_frac] = -1
    batches[0] = -1  # one worker without examples
    return w, X, y, batches


SHAPES = [(1, 1, 1, 2), (5, 3, 30, 2), (7, 32, 64, 10), (4, 9, 784, 10), (3, 17, 33, 3), (6, 1, 129, 5), (5, 6, 40, 7)]


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("m, b, features, classes", SHAPES)
def test_step_matches_reference_and_leaves_inputs_alone(m, b, features, classes, dtype, tol):
    w, X, y, batches = make_case(m, b, features, classes, dtype=dtype)
    copies = [a.copy() for a in (w, X, y, batches)]
    U = cpu.lr_sgd_step(w, X, y, batches, classes, 0.5)
    assert U.dtype == dtype and U.shape == (m, w.size)
    expected = reference.lr_sgd_step(w, X, y, batches, classes, 0.5)
    np.testing.assert_allclose(U, expected, rtol=tol, atol=tol)
    assert np.all(U[0] == 0.0)  # no examples: no update
    # A second step starts from w + U and updates U in place.
    U2 = cpu.lr_sgd_step(w, X, y, batches, classes, 0.5, U)
    expected2 = reference.lr_sgd_step(w, X, y, batches, classes, 0.5, expected)
    np.testing.assert_allclose(U2, expected2, rtol=tol, atol=tol)
    for a, c in zip((w, X, y, batches), copies):
        np.testing.assert_array_equal(a, c)


def test_reference_is_the_autograd_gradient():
    """The twin's formula is the gradient of the batch-mean cross-entropy."""
    w, X, y, batches = make_case(4, 6, 12, 3, dtype=np.float64)
    U = reference.lr_sgd_step(w, X, y, batches, 3, 1.0)
    for i in range(1, 4):
        idx = batches[i][batches[i] >= 0]
        p = torch.tensor(w, requires_grad=True)
        logits = torch.tensor(X[idx]) @ p[:36].view(3, 12).T + p[36:]
        torch.nn.functional.cross_entropy(logits, torch.tensor(y[idx])).backward()
        np.testing.assert_allclose(U[i], -p.grad.numpy(), rtol=1e-12, atol=1e-14)


def test_lr_model_native_path_equals_autograd_path():
    """LogisticRegression.sgd_step (native) and BatchedModel.sgd_step (gather + autograd)."""
    model = models.get("lr", (1, 6, 6), 4)
    rng = np.random.default_rng(3)
    x_all = torch.from_numpy(rng.random((50, 1, 6, 6), dtype=np.float32))
    y_all = torch.from_numpy(rng.integers(0, 4, 50).astype(np.int64))
    w = model.init(rng)
    batches = rng.integers(-1, 50, (8, 5)).astype(np.int64)
    native = autograd = None
    for _ in range(3):  # several local steps
        native = model.sgd_step(w, native, x_all, y_all, batches, 0.3)
        autograd = models.BatchedModel.sgd_step(model, w, autograd, x_all, y_all, batches, 0.3)
    torch.testing.assert_close(native, autograd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_step_flags_exactly_the_rows_that_hold_nan_or_inf(dtype):
    """nonfinite[i] = whether row i of the result holds a NaN or an Inf, on a first step (an
    example with an Inf feature spoils the rows of the workers that draw it) and on a later
    one (rows of U already holding a NaN or an Inf in a single coordinate stay so)."""
    w, X, y, batches = make_case(40, 3, 33, 3, dtype=dtype, seed=4)
    X[7, 5] = np.inf
    batches[[3, 9, 17], 1] = 7
    flags = np.ones(40, dtype=bool)  # whatever it held is overwritten
    U = cpu.lr_sgd_step(w, X, y, batches, 3, 0.5, nonfinite=flags)
    np.testing.assert_array_equal(flags, ~np.isfinite(U).all(axis=1))
    assert 0 < flags.sum() < 40
    X[7, 5] = 1.0
    U = cpu.lr_sgd_step(w, X, y, batches, 3, 0.5)
    U[11, -1], U[23, 0], U[31, 50] = np.nan, np.inf, -np.inf
    cpu.lr_sgd_step(w, X, y, batches, 3, 0.5, U, nonfinite=flags)
    np.testing.assert_array_equal(np.flatnonzero(flags), [11, 23, 31])
    np.testing.assert_array_equal(flags, ~np.isfinite(U).all(axis=1))


def test_the_lr_model_flags_nonfinite_rows_like_the_autograd_path():
    model = models.get("lr", (1, 6, 6), 4)
    rng = np.random.default_rng(5)
    x_all = torch.from_numpy(rng.random((50, 1, 6, 6), dtype=np.float32))
    x_all[9, 0, 2, 2] = np.nan
    y_all = torch.from_numpy(rng.integers(0, 4, 50).astype(np.int64))
    batches = rng.integers(0, 50, (30, 4)).astype(np.int64)
    w = model.init(rng)
    native, autograd = np.zeros(30, dtype=bool), np.zeros(30, dtype=bool)
    model.sgd_step(w, None, x_all, y_all, batches, 0.3, native)
    models.BatchedModel.sgd_step(model, w, None, x_all, y_all, batches, 0.3, autograd)
    np.testing.assert_array_equal(native, (batches == 9).any(axis=1))
    np.testing.assert_array_equal(autograd, native)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bit_identical_for_1_2_and_3_threads(dtype, restore_threads):
    w, X, y, batches = make_case(37, 8, 100, 10, dtype=dtype)
    results = [run_with_threads(n, cpu.lr_sgd_step, w, X, y, batches, 10, 0.1) for n in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.skipif(len(SIMD_LEVELS) < 3, reason="needs both vector levels (avx2 and avx512)")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("features, classes", [(784, 10), (100, 3), (33, 7), (7, 10)])
def test_the_vector_levels_give_the_same_bits(features, classes, dtype, restore_simd):
    """AVX2 and AVX-512 fuse every product into its sum, whatever their blocks (4 examples and
    5 classes a block at AVX-512, 2 and 2 at AVX2), a first step and a step from U alike,
    scalar tails (features not a multiple of 8) included."""
    w, X, y, batches = make_case(13, 9, features, classes, dtype=dtype, seed=features)
    first = {level: run_with_simd(level, cpu.lr_sgd_step, w, X, y, batches, classes, 0.1) for level in SIMD_LEVELS[1:]}
    np.testing.assert_array_equal(first["avx512"], first["avx2"])
    U = first["avx2"]
    second = {level: run_with_simd(level, cpu.lr_sgd_step, w, X, y, batches[::-1].copy(), classes, 0.05, U.copy())
              for level in SIMD_LEVELS[1:]}
    np.testing.assert_array_equal(second["avx512"], second["avx2"])


@pytest.mark.parametrize("change, error, match", [
    (lambda a: a.update(w=a["w"][:-1]), ValueError, "w: expected 40 = features"),
    (lambda a: a.update(w=a["w"].astype(np.float16)), TypeError, "w: expected float32 or float64"),
    (lambda a: a.update(X=a["X"].astype(np.float64)), TypeError, "X: expected dtype float32"),
    (lambda a: a.update(X=np.asfortranarray(a["X"])), ValueError, "X: expected a C-contiguous"),
    (lambda a: a.update(y=a["y"][:-1]), ValueError, "y: expected one label per row of X"),
    (lambda a: a["y"].__setitem__(3, 4), ValueError, r"y: labels must lie in \[0, 4\), got 4 at index 3"),
    (lambda a: a.update(y=a["y"].astype(np.int32)), TypeError, "y: expected dtype int64"),
    (lambda a: a["batches"].__setitem__((0, 0), 20), ValueError, r"batches: indices must lie in \[-1, 20\)"),
    (lambda a: a.update(batches=a["batches"][0]), ValueError, "batches: expected a 2-D array"),
    (lambda a: a.update(U=np.zeros((2, 40), np.float32)), ValueError, r"U: expected shape \(3, 40\)"),
    (lambda a: a.update(classes=0), ValueError, "classes must be >= 1"),
    (lambda a: a.update(nonfinite=np.zeros(3, np.uint8)), TypeError, "nonfinite: expected dtype bool"),
    (lambda a: a.update(nonfinite=np.zeros(4, bool)), ValueError, r"nonfinite: expected shape \(3,\)"),
    (lambda a: a.update(nonfinite=np.zeros((3, 1), bool)), ValueError, "nonfinite: expected a 1-D bool array"),
])
def test_bad_arguments_say_what_was_expected(change, error, match):
    rng = np.random.default_rng(0)
    args = dict(w=np.zeros(40, np.float32), X=rng.random((20, 9), dtype=np.float32),
                y=rng.integers(0, 4, 20).astype(np.int64), batches=rng.integers(-1, 20, (3, 2)).astype(np.int64),
                classes=4, lr=0.1, U=None)
    change(args)
    with pytest.raises(error, match=match):
        cpu.lr_sgd_step(**args)


def test_first_step_into_out_equals_a_fresh_first_step():
    w, X, y, batches = make_case(9, 7, 40, 4)
    fresh = cpu.lr_sgd_step(w, X, y, batches, 4, 0.3)
    out = np.full_like(fresh, np.nan)  # whatever it held is overwritten, never read
    assert cpu.lr_sgd_step(w, X, y, batches, 4, 0.3, out=out) is out
    np.testing.assert_array_equal(out, fresh)
    with pytest.raises(ValueError, match="give U .* or out .*, not both"):
        cpu.lr_sgd_step(w, X, y, batches, 4, 0.3, fresh, out)
    with pytest.raises(ValueError, match=r"out: expected shape \(9, 164\)"):
        cpu.lr_sgd_step(w, X, y, batches, 4, 0.3, out=out[1:].copy())
    with pytest.raises(TypeError, match="out: expected dtype float32"):
        cpu.lr_sgd_step(w, X, y, batches, 4, 0.3, out=out.astype(np.float64))


def test_lr_model_reuses_a_first_step_array_only_when_nobody_holds_it():
    """LogisticRegression.sgd_step writes a first step into the previous first step's array
    once that is free; an update someone still holds is never overwritten."""
    model = models.get("lr", (1, 6, 6), 4)
    rng = np.random.default_rng(5)
    x_all = torch.from_numpy(rng.random((50, 1, 6, 6), dtype=np.float32))
    y_all = torch.from_numpy(rng.integers(0, 4, 50).astype(np.int64))
    w = model.init(rng)
    draws = [rng.integers(-1, 50, (8, 5)).astype(np.int64) for _ in range(3)]
    held = model.sgd_step(w, None, x_all, y_all, draws[0], 0.3)
    kept = held.clone()
    second = model.sgd_step(w, None, x_all, y_all, draws[1], 0.3)
    assert second.data_ptr() != held.data_ptr()  # the first is still held here: a new array
    torch.testing.assert_close(held, kept, rtol=0, atol=0)
    expected = torch.from_numpy(cpu.lr_sgd_step(w.numpy(), x_all.reshape(50, 36).numpy(), y_all.numpy(),
                                                draws[2], 4, 0.3))
    address = second.data_ptr()
    del second  # now nobody holds it
    third = model.sgd_step(w, None, x_all, y_all, draws[2], 0.3)
    assert third.data_ptr() == address
    torch.testing.assert_close(third, expected, rtol=0, atol=0)


def test_read_only_U_is_refused():
    U = np.zeros((1, 6), np.float32)
    U.flags.writeable = False
    with pytest.raises(ValueError, match="U: expected a writable array"):
        cpu.lr_sgd_step(np.zeros(6, np.float32), np.zeros((2, 2), np.float32), np.zeros(2, np.int64),
                        np.zeros((1, 1), np.int64), 2, 0.1, U)
