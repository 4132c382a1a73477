"""The Krum attack on CUDA: the crafting steps shared by both backends
(csrc/include/fedrobust/krum_craft.h) and the attack's device path (fedrobust.dispatch.Backend over fedrobust._cuda).

On the CPU, always: the CPU krum_craft against a chunked float64 twin, bit for bit, around the
4096-column chunk boundary; the CUDA kernel's steps in scalar code (_emulation.krum_craft_scalar)
against the CPU kernel; the attack's torch path driven by the CPU kernels behind the CUDA
entry points' signatures; the --device cuda check. On a GPU (marked `gpu`, skipped without a
visible device): the CUDA kernels against the CPU ones and the whole attack on torch CUDA
tensors against the numpy run."""
import numpy as np
import pytest

from fedrobust import _emulation, dispatch, reference
from fedrobust._native import cpu, cuda
from fedrobust.attacks import AttackContext, AttackOptions, KrumPool, krum_attack

from conftest import DTYPES, HAVE_AVX2, assert_identical, native_krum_craft, run_with_simd, run_with_threads
from test_cuda import _fedrobust_sees_the_device, _libraries, gpu  # noqa: F401 (the autouse fixture applies here)

CHUNK = 4096
AROUND_CHUNKS = [1, 2, 3, 7, 4095, 4096, 4097, 8191, 8192, 8193, 12289]


def updates(m, d, seed=0, dtype=np.float32, drift=0.002):
    rng = np.random.default_rng(seed)
    return (0.01 * rng.standard_normal((m, d)) + drift * rng.standard_normal(d)).astype(dtype)


def dyadic_updates(m, d, seed=0, dtype=np.float32):
    """Multiples of 2^-12 with numerators in [-64, 64]: every distance, norm and dot of these rows
    is an exact sum (well below 2^24 units of 2^-24) on either backend, whatever the order, so
    the CPU and the GPU search on the same numbers."""
    rng = np.random.default_rng(seed)
    k = np.clip(np.rint(16 * rng.standard_normal((m, d)) + 4 * rng.standard_normal(d)), -64, 64)
    return (k / 4096).astype(dtype)


def context(U, c, knowledge="full", rule="krum", global_model=None, **options):
    params = {"krum": {"c": c, "squared": options.get("krum_squared", True)}, "median": {}}[rule]
    w = global_model if global_model is not None else np.zeros(U.shape[1], dtype=np.float32)
    return AttackContext(U, np.arange(c), w, rule, params, knowledge, np.random.default_rng(0), round=3,
                         seed=11, lr=0.1, options=AttackOptions(**options))


def directions(d, seed):
    return np.random.default_rng(seed).integers(-1, 2, d).astype(np.int8)


def assert_same_metrics(got, expected):
    """Equal metrics; direction_agreement to 1e-6 (torch averages the mask in float32)."""
    got, expected = dict(got), dict(expected)
    assert got.pop("direction_agreement", None) == pytest.approx(expected.pop("direction_agreement", None), abs=1e-6)
    assert got == expected


def chunked_twin(s, lam, eps, seed, round, ids, dtype):
    """krum_craft in numpy, step for step: z rounded to dtype, its squares summed in column order
    (np.cumsum is sequential) per chunk of 4096 columns, the chunks added in order; row 0 =
    -lam s, row k = -lam s + (r_k / ||z_k||) z_k in float64, rounded to dtype."""
    d = s.size
    s64 = s.astype(np.float64)
    out = np.empty((len(ids), d), dtype=dtype)
    out[0] = (-lam * s64).astype(dtype)
    for k in range(1, len(ids)):
        z = reference.normal_pairs(seed, round, int(ids[k]), d).astype(dtype).astype(np.float64)
        sq = 0.0
        for j0 in range(0, d, CHUNK):
            sq += float(np.cumsum(z[j0:j0 + CHUNK] * z[j0:j0 + CHUNK])[-1])
        r = eps * float(reference.uniform01(reference.counter_hash(seed, round, np.uint64(ids[k]), np.uint64(d))))
        scale = r / np.sqrt(sq) if sq > 0 else 0.0
        out[k] = (-lam * s64 + scale * z).astype(dtype)
    return out


# ---------------------------------------------------------------------------
# The shared crafting steps, on the CPU
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", AROUND_CHUNKS)
def test_cpu_krum_craft_equals_the_chunked_twin_bit_for_bit(d, dtype):
    s = directions(d, d)
    ids = np.array([3, 0, 17, 5], dtype=np.int64)
    out = native_krum_craft(s, 0.3, 0.02, 21, 6, ids, dtype)
    assert_identical(out, chunked_twin(s, 0.3, 0.02, 21, 6, ids, dtype), f"d = {d}")
    # and close to the twin that sums the norm in one go
    np.testing.assert_allclose(out, reference.krum_craft(s, 0.3, 0.02, 21, 6, ids, dtype).astype(dtype),
                               rtol=1e-6 if dtype == np.float32 else 1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", AROUND_CHUNKS)
def test_the_cuda_kernels_steps_in_scalar_code_equal_the_cpu_kernel(d, dtype, restore_simd, restore_threads):
    """_emulation.krum_craft_scalar runs krum_craft.h the way the CUDA kernels do (a normal pair at a
    time, then chunk sums, scales, values): the same bits as the CPU kernel at every SIMD level
    and thread count."""
    levels = ["generic", "avx2"] if HAVE_AVX2 else ["generic"]
    for seed, ids, lam, eps in [(0, [0], 0.5, 0.01), (11, [4, 9, 2], 0.25, 0.01), (7, [40, 1, 2, 3, 5], 3e-5, 0.0)]:
        s = directions(d, seed)
        ids = np.array(ids, dtype=np.int64)
        expected = native_krum_craft(s, lam, eps, seed, 5, ids, dtype, fill=_emulation.krum_craft_scalar)
        assert expected.shape == (ids.size, d) and expected.dtype == dtype
        for level in levels:
            for threads in (1, 2):
                got = run_with_simd(level, run_with_threads, threads, native_krum_craft, s, lam, eps, seed, 5, ids,
                                    dtype)
                assert_identical(got, expected, f"{level}, {threads} threads, seed {seed}")


def test_scalar_steps_check_their_arguments_like_the_kernel():
    s = directions(10, 0)
    ids = np.array([0, 1], dtype=np.int64)
    with pytest.raises(ValueError, match="lambda must be finite"):
        native_krum_craft(s, np.nan, 0.01, 0, 0, ids, np.float32, fill=_emulation.krum_craft_scalar)
    with pytest.raises(ValueError, match="eps must be >= 0"):
        native_krum_craft(s, 0.1, -1.0, 0, 0, ids, np.float32, fill=_emulation.krum_craft_scalar)
    with pytest.raises(TypeError, match="float32 or float64"):
        native_krum_craft(s, 0.1, 0.01, 0, 0, ids, np.int32, fill=_emulation.krum_craft_scalar)


# ---------------------------------------------------------------------------
# The attack's device path, driven on the host: CPU torch tensors stand for CUDA ones, and
# the CPU kernels stand behind fedrobust._cuda's entry points (tests/host_device.py; their
# signatures are checked in test_device_paths.py).
# ---------------------------------------------------------------------------
KRUM_CASES = [("full", "krum", {}), ("full", "krum", {"krum_squared": False}), ("full", "krum", {"direction": "mean"}),
              ("full", "median", {}), ("full", "krum", {"goal": "deviation"}), ("partial", "krum", {}),
              ("partial", "krum", {"goal": "deviation"})]


@pytest.mark.usefixtures("host_as_device")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("knowledge, rule, options", KRUM_CASES)
def test_the_torch_path_sends_what_the_numpy_path_sends(knowledge, rule, options, dtype):
    torch = pytest.importorskip("torch")
    U = updates(30, 700, seed=2, dtype=dtype)
    T = torch.from_numpy(U.copy())
    on_numpy, on_torch = context(U, 6, knowledge, rule, **options), context(T, 6, knowledge, rule, **options)
    expected = krum_attack(on_numpy)
    got = krum_attack(on_torch)
    assert isinstance(got, torch.Tensor) and got.dtype == T.dtype and got.shape == (6, 700)
    assert_same_metrics(on_torch.metrics, on_numpy.metrics)  # the same kernels behind both: the same numbers
    assert_identical(got.numpy(), expected)
    np.testing.assert_array_equal(T.numpy(), U)


@pytest.mark.usefixtures("host_as_device")
@pytest.mark.parametrize("knowledge", ["full", "partial"])
def test_the_torch_path_sends_the_genuine_rows_when_no_lambda_works(monkeypatch, knowledge):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(KrumPool, "crafted_wins", lambda self, *args: False)
    T = torch.from_numpy(updates(12, 50))
    ctx = context(T, 3, knowledge, on_failure="benign")
    rows = krum_attack(ctx)
    assert ctx.metrics["sent"] == "benign" and isinstance(rows, torch.Tensor) and torch.equal(rows, T[:3])


@pytest.mark.skipif(cuda is None, reason="the CUDA module is not built")
def test_device_cuda_accepts_the_krum_attack(monkeypatch):
    torch = pytest.importorskip("torch")
    from fedrobust.simulation import Config

    monkeypatch.setattr(cuda, "device_count", lambda: 1)  # as if a device were visible
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for knowledge in ("full", "partial"):
        Config(dataset="digits", rule="krum", workers=20, compromised=4, device="cuda", attack="krum",
               knowledge=knowledge).validate()


# ---------------------------------------------------------------------------
# On a GPU
# ---------------------------------------------------------------------------
def _torch():
    if "torch" not in _libraries():
        pytest.skip("torch with CUDA not available")
    import torch

    return torch


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", AROUND_CHUNKS + [70001])
def test_gpu_krum_craft_equals_the_cpu_bit_for_bit(d, dtype):
    torch = _torch()
    like = torch.zeros((1, d), dtype=getattr(torch, np.dtype(dtype).name), device="cuda")
    cases = [(0, [0], 0.5, 0.01), (11, [4, 9, 2], 0.25, 0.01), (7, [40, 1, 2, 3, 5, 8, 13], 3e-5, 1e-3),
             (3, [6, 2], 1.5, 0.0)]
    for seed, ids, lam, eps in cases:
        s = directions(d, seed)
        expected = native_krum_craft(s, lam, eps, seed, 5, ids, dtype)
        got = dispatch.backend_of(like).krum_craft(like, torch.as_tensor(s, device="cuda"), lam, eps, seed, 5, ids)
        assert got.device == like.device and got.dtype == like.dtype and got.shape == (len(ids), d)
        assert_identical(got.cpu().numpy(), expected, f"d = {d}, seed {seed}")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["C", "column_major", "col_strided", "rows"])
@pytest.mark.parametrize("m, d", [(1, 1), (7, 300), (23, 5003), (60, 70001)])
def test_gpu_norms_and_dots_are_close_to_the_cpu(m, d, layout, dtype):
    torch = _torch()
    U = (0.01 * np.random.default_rng(d).standard_normal((m, d)) + 0.5).astype(dtype)
    s = directions(d, m)
    G = torch.as_tensor(U, device="cuda")
    if layout == "column_major":
        G = G.t().contiguous().t()
    elif layout == "col_strided":
        wide = torch.zeros((m, 2 * d), dtype=G.dtype, device="cuda")
        wide[:, ::2] = G
        G = wide[:, ::2]
    rows = [m - 1] + list(range(0, m - 1, 2)) if layout == "rows" else None
    norms, dots = dispatch.backend_of(G).norms_and_dots(G, torch.as_tensor(s, device="cuda"), rows)
    expected_norms, expected_dots = cpu.norms_and_dots(U, s, rows)
    assert isinstance(norms, np.ndarray) and norms.dtype == np.float64 and norms.shape == expected_norms.shape
    # Both sum in double in fixed orders (CPU: 8 lanes; GPU: 256 strided partial sums, then a
    # tree): they differ in the last bits only, relative to the sums of |terms|.
    picked = U if rows is None else U[rows]
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-12, atol=0)
    bound = 1e-12 * (np.abs(picked.astype(np.float64)) @ np.abs(s.astype(np.float64)))
    assert np.all(np.abs(dots - expected_dots) <= bound), np.max(np.abs(dots - expected_dots) - bound)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("knowledge, rule, options", KRUM_CASES)
def test_gpu_krum_attack_equals_the_numpy_run_on_exactly_summed_data(knowledge, rule, options, dtype):
    """With every sum exact (dyadic_updates) the device run searches on the CPU's numbers, so
    lambda, the probes and the crafted bits are equal, not just close."""
    torch = _torch()
    U = dyadic_updates(40, 3000, seed=5, dtype=dtype)
    K = np.rint(U.astype(np.float64) * 4096)
    exact = ((K[:, None, :] - K[None, :, :]) ** 2).sum(axis=2) / 2.0 ** 24
    np.testing.assert_array_equal(cpu.sq_distances(U, None), exact)  # the premise
    G = torch.as_tensor(U, device="cuda")
    on_cpu = context(U, 8, knowledge, rule, **options)
    on_gpu = context(G, 8, knowledge, rule, global_model=torch.zeros(3000, device="cuda"), **options)
    expected = krum_attack(on_cpu)
    got = krum_attack(on_gpu)
    assert isinstance(got, torch.Tensor) and got.device == G.device and got.dtype == G.dtype
    assert on_cpu.metrics["found"]
    assert_same_metrics(on_gpu.metrics, on_cpu.metrics)
    assert_identical(got.cpu().numpy(), expected)
    np.testing.assert_array_equal(G.cpu().numpy(), U)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("knowledge", ["full", "partial"])
def test_gpu_krum_attack_on_random_data_agrees_with_the_numpy_run(knowledge, dtype):
    """Random data: the device distances and norms differ from the CPU's in the last bits (the
    CPU sums float32 distances in float lanes), so lambda_0 and lambda agree to rounding only;
    the search's decisions (found, probes, copies) are far from ties and agree exactly, and the
    crafting is the CPU's bits for the lambda and direction the device run used."""
    torch = _torch()
    U = updates(50, 20000, seed=3, dtype=dtype)
    on_cpu = context(U, 10, knowledge)
    on_gpu = context(torch.as_tensor(U, device="cuda"), 10, knowledge)
    expected = krum_attack(on_cpu)
    got = krum_attack(on_gpu).cpu().numpy()
    assert on_cpu.metrics["found"]
    for key in ("found", "probes", "copies"):
        assert on_gpu.metrics.get(key) == on_cpu.metrics.get(key), key
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for key in ("lambda", "lambda_start"):
        assert on_gpu.metrics[key] == pytest.approx(on_cpu.metrics[key], rel=rtol), key
    s = (-np.sign(expected[0])).astype(np.int8)  # row 0 is -lambda s
    crafted = native_krum_craft(s, on_gpu.metrics["lambda"], 0.01, 11, 3, on_cpu.compromised_ids(), dtype)
    assert_identical(got, crafted)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


@pytest.mark.gpu
@gpu
def test_gpu_krum_attack_sends_the_genuine_rows_when_no_lambda_works(monkeypatch):
    torch = _torch()
    monkeypatch.setattr(KrumPool, "crafted_wins", lambda self, *args: False)
    G = torch.as_tensor(updates(12, 50), device="cuda")
    ctx = context(G, 3, on_failure="benign")
    rows = krum_attack(ctx)
    assert ctx.metrics["sent"] == "benign" and rows.device == G.device and torch.equal(rows, G[:3])


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("knowledge", ["full", "partial"])
def test_gpu_simulation_with_the_krum_attack(tmp_path, knowledge):
    _torch()
    from fedrobust.simulation import Config, Simulation

    config = Config(dataset="digits", model="lr", rule="krum", workers=40, compromised=8, rounds=10, lr=0.5,
                    eval_every=5, attack="krum", knowledge=knowledge, device="cuda", out=str(tmp_path / "gpu"))
    summary = Simulation(config, progress=False).run()
    assert summary["attack"]["rounds_attacked"] == 10 and 0.0 <= summary["attack"]["found_mean"] <= 1.0
    assert 0.0 <= summary["final_test_error"] <= 1.0
