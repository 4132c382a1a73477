"""The benchmark package's restructured parts: the shared baselines on torch tensors, the
rule table, the memory probe's fresh process, and bench/gpu_bench.py importing without a GPU."""
from __future__ import annotations

import importlib.util
import pathlib
import sys

import numpy as np
import pytest
import torch

from fedrobust import aggregators, reference
from fedrobust.benchmarks import attacks, cases, inputs, memory
from fedrobust.benchmarks import baselines as bl

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load_gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("m", [51, 40])
def test_torch_baselines_on_cpu_tensors_equal_the_numpy_baselines(m):
    """Odd m: torch's lower-middle median is the median; even m: compared with the lower middle."""
    d = 200
    U = inputs.make_updates(m, d, seed=2)
    T = torch.from_numpy(U.copy())
    c = beta = inputs.byzantine_count(m)
    mask = inputs.first_rows_mask(m, c)

    np.testing.assert_allclose(bl.torch_mean(T).numpy(), bl.numpy_mean(U), rtol=1e-6, atol=1e-7)
    lower_middle = np.sort(U, axis=0)[(m - 1) // 2]
    np.testing.assert_array_equal(bl.torch_median(T).values.numpy(), lower_middle)
    if m % 2:
        np.testing.assert_array_equal(bl.torch_median(T).values.numpy(), bl.numpy_median(U))
    np.testing.assert_allclose(bl.torch_trimmed_mean(T, beta).numpy(), bl.numpy_trimmed_mean(U, beta),
                               rtol=1e-5, atol=1e-6)
    # Both go through the Gram matrix: |u|^2 ~ 200, so absolute errors ~ 1e-4.
    np.testing.assert_allclose(bl.torch_pairwise_sq(T).numpy(), bl.numpy_pairwise_sq(U), rtol=1e-5, atol=1e-3)
    assert int(bl.torch_krum_index(T, c)) == bl.numpy_krum_index(U, c) == int(aggregators.krum_select(U, c)[0])
    np.testing.assert_array_equal(bl.torch_krum(T, c).numpy(), bl.numpy_krum(U, c))
    for got, want in zip(bl.torch_coordinate_stats(T, mask), bl.numpy_coordinate_stats(U, mask)):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(bl.byzfl_aggregators() is None, reason="byzfl is not installed")
def test_byzfl_rows_compute_the_rules_they_stand_for():
    """byzfl's rows on a torch tensor: its median is torch's lower middle (odd m: the median),
    its TrMean(beta) the trimmed mean, its Krum(c) a row of U (it sums one more neighbour)."""
    m, d = 41, 300
    U = inputs.make_updates(m, d, seed=5)
    c = beta = inputs.byzantine_count(m)
    by_rule = {case.rule: case.fn for case in cases.byzfl_cases(U, c, beta)}
    assert set(by_rule) == {"mean", "median", "trimmed_mean", "krum"}
    np.testing.assert_allclose(np.asarray(by_rule["mean"]()), U.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(by_rule["median"]()), aggregators.median(U))
    np.testing.assert_allclose(np.asarray(by_rule["trimmed_mean"]()), reference.trimmed_mean(U, beta),
                               rtol=1e-5, atol=1e-6)
    chosen = np.asarray(by_rule["krum"]())
    assert any(np.array_equal(chosen, row) for row in U)
    assert "byzfl" not in sys.modules or hasattr(sys.modules["byzfl"], "__file__"), "no bare package left behind"


def test_the_rule_table_matches_the_cases_and_the_aggregators():
    """Every (rule, impl) of RULE_IMPLS has exactly one case, and every rule the benchmarks
    aggregate with (table rules and attacked rules) takes its `rule_params`."""
    m, d = 30, 50
    U = inputs.make_updates(m, d)
    c = beta = inputs.byzantine_count(m)
    got = [(case.rule, case.impl) for case in cases.all_cases(U, c, beta, bulyan=True)]
    absent = set() if bl.byzfl_aggregators() is not None else {"byzfl"}  # an optional package
    assert got == [(rule, impl) for rule, impls in cases.RULE_IMPLS.items() for impl in impls if impl not in absent]
    assert set(cases.TABLE_RULES) <= set(cases.RULE_IMPLS)
    registry_rules = [r for r in cases.RULE_IMPLS if r in aggregators.available()]
    for rule in registry_rules + [rule for _, _, rule in attacks.ATTACK_CASES]:
        out = cases.bound_rule(rule, cases.rule_params(rule, c, beta), U)()
        assert np.asarray(out).shape == (d,), rule


def test_memory_probe_runs_in_a_fresh_process():
    result = memory.measure_peak_extra_memory("krum", 20, 500, threads=1)
    assert set(result) == {"peak_extra_mib", "peak_before_mib", "rss_before_mib", "peak_source", "peak_reset"}
    assert result["peak_extra_mib"] >= 0 and result["peak_source"] in ("VmHWM", "ru_maxrss")


def test_gpu_bench_imports_without_a_gpu_and_formats_a_result():
    gpu_bench = _load_gpu_bench()
    assert gpu_bench.bl is bl
    result = {
        "device": "some GPU",
        "kernels": [{"m": 4, "d": 8, "gib": 0.5, "read_once_seconds": 1e-3, "copy_seconds": 2e-3,
                     "krum_same_choice_as_torch_cdist": True,
                     "rows": {"fedrobust median": {"seconds": 2e-3, "fraction_of_read_bandwidth": 0.5}},
                     "speedups": {"median vs torch.median": 3.0}}],
        "simulation": {"dataset": "synthetic", "workers": 10, "rule": "median", "attack": "trim (partial knowledge)",
                       "seconds_per_round": 0.01, "rounds_per_second": 100.0},
    }
    text = gpu_bench.report(result)
    assert text.splitlines()[0] == "some GPU"
    assert "speedup, median vs torch.median: 3.0x" in text
    assert text.endswith("10.0 ms/round = 100.0 rounds/s")


@pytest.mark.parametrize("m", [21, 40])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_sort_baselines_compute_the_rules(m, dtype):
    """np.sort(axis=0) baselines: the median (even m: lo/2 + hi/2, as the rule) and the trimmed mean."""
    U = inputs.make_updates(m, 300, seed=3).astype(dtype)
    beta = inputs.byzantine_count(m)
    if dtype == np.float64:
        np.testing.assert_array_equal(bl.numpy_sort_median(U), aggregators.median(U))
    else:  # the rule halves in double, the baseline in float32: the last bit may differ
        np.testing.assert_allclose(bl.numpy_sort_median(U), aggregators.median(U), rtol=0, atol=1e-7)
    np.testing.assert_allclose(bl.numpy_sort_trimmed_mean(U, beta), reference.trimmed_mean(U, beta),
                               rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-6 if dtype == np.float32 else 0)  # numpy sums float32 in float32


def test_the_round_split_times_each_part_and_the_rest():
    from fedrobust.benchmarks import simulation as simbench
    from fedrobust.simulation import Config, Simulation

    sim = Simulation(Config(dataset="digits", workers=20, compromised=4, out=None), progress=False)
    split = simbench.round_split(sim, sim.initial_state(), rounds=2)
    assert list(split) == ["round", "sample", "train", "aggregate", "other"]
    assert all(split[k] > 0 for k in ("round", "sample", "train", "aggregate"))
    assert abs(split["round"] - sum(split[k] for k in ("sample", "train", "aggregate", "other"))) < 1e-12


def test_the_dnn_per_worker_loop_computes_the_batched_step():
    """The DNN loop baseline trains the same models: its updates equal the batched step's."""
    from fedrobust.benchmarks import simulation as simbench

    sim = simbench.dnn_simulation(None, workers=10)
    w = sim.initial_state().w
    batches = sim.sample_indices(np.arange(10), np.random.default_rng(1))
    batched = sim.model.sgd_step(w, None, sim.x_train, sim.y_train, batches, sim.learning_rate)
    looped = simbench.per_worker_dnn_updates(sim, w, batches)
    assert looped.shape == batched.shape == (10, sim.model.d)
    torch.testing.assert_close(looped, batched, rtol=1e-4, atol=1e-6)
    assert looped.abs().max() > 0


def test_the_resnet20_per_worker_loop_computes_the_batched_step():
    """The ResNet20 loop baseline trains the same models (TorchResNet20 holds the flat layout's
    parameters in order): its updates equal the batched step's."""
    from fedrobust import models
    from fedrobust.benchmarks import simulation as simbench

    model = models.get("resnet20", (1, 8, 8), 8)
    rng = np.random.default_rng(2)
    x_all = torch.from_numpy(rng.standard_normal((40, 1, 8, 8), dtype=np.float32))
    y_all = torch.from_numpy(rng.integers(0, 8, 40))
    w = model.init(rng)
    batches = rng.integers(-1, 40, (3, 6))
    net = simbench.TorchResNet20(model)
    assert [tuple(p.shape) for p in net.parameters()] == [spec.shape for spec in model.layout]
    batched = model.sgd_step(w, None, x_all, y_all, batches, 0.2)
    looped = simbench.per_worker_resnet20_updates(model, w, x_all, y_all, batches, 0.2)
    assert looped.shape == batched.shape == (3, model.d)
    torch.testing.assert_close(looped, batched, rtol=1e-4, atol=1e-6)
    assert looped.abs().max() > 0


def test_the_simulation_benchmark_runs_and_its_report_names_every_part():
    from fedrobust.benchmarks import report
    from fedrobust.benchmarks import simulation as simbench

    result = simbench.run(None, [20], log=lambda s: None, dnn_workers=10, resnet_workers=2, resnet_image=(1, 8, 8))
    text = report.format_simulation_report(result)
    assert result["dnn_loop"]["workers"] == 10 and result["dnn_loop"]["speedup"] > 0
    assert result["resnet20_loop"]["workers"] == 2 and "ResNet20, one local step, 1 x 8 x 8 images" in text
    assert "per-worker loop of torch models" in text and "synthetic, m = 20" in text
    assert [row["workers"] for row in result["scaling"]] == [20] and "split" in result["scaling"][0]


def test_large_m_shapes_time_only_the_coordinatewise_rules():
    """From COORDINATE_ONLY_FROM_M workers Krum and Bulyan are left out (minutes per call); the
    coordinate-wise rules and their baselines are all still timed."""
    from fedrobust.benchmarks import aggregation

    assert aggregation.shape_rules(100) == cases.TABLE_RULES
    m = aggregation.COORDINATE_ONLY_FROM_M
    shape = aggregation.bench_shape(m, 3, repeats=1, memory=False, threads=1)
    rules = {row["rule"] for row in shape["rows"]}
    assert rules == set(aggregation.shape_rules(m)) == set(cases.TABLE_RULES) - {"krum", "bulyan"}
    impls = {(row["rule"], row["impl"]) for row in shape["rows"]}
    assert ("median", "numpy_sort") in impls and ("median", "fedrobust") in impls
