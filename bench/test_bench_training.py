"""pytest-benchmark suite: one local SGD step of every worker, the batched paths against
the per-worker loops FL simulators use, and for LR against the gather of its examples.

    pytest bench --benchmark-enable -k training                 # small sizes, about a minute
    FEDROBUST_BENCH_FULL=1 pytest bench --benchmark-enable -k training   # the README's sizes

Groups (batch 32, Gaussian data, one seeded draw of minibatches; ratios within a group):
- LR on MNIST-shaped data (60,000 x 784, 10 classes), m = 100 (FULL: also 10,000 with
  batch 6, about MNIST's local sets there): "native kernel" (LogisticRegression.sgd_step),
  "batched autograd" (the path of other devices), "gather the batch" (torch.index_select of
  the m x B examples: the step reads each of them once).
- DNN, 1 x 28 x 28, m = 20 (FULL: 100): "chunked" (sgd_step's default on the CPU),
  "one pass" (all workers in one grouped forward / backward), "per-worker loop".
- ResNet20, 1 x 32 x 32, m = 2 (FULL: 1 x 64 x 64, m = 8): "one worker at a time" (the
  default on the CPU), "one pass", "per-worker loop".
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import fedrobust
from fedrobust import models
from fedrobust.benchmarks import simulation as simbench
from fedrobust.benchmarks.machine import set_threads

FULL = os.environ.get("FEDROBUST_BENCH_FULL") == "1"
ROUNDS = 3


def _data(shape, classes, n, seed=0):
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((n, *shape), dtype=np.float32))
    return x, torch.from_numpy(rng.integers(0, classes, n)), rng


def _one_pass(model):
    """sgd_step with every worker in one batched pass (the CPU chunking switched off)."""
    def step(w, x, y, batches):
        model.cpu_workers_per_chunk = lambda batch: batches.shape[0]
        try:
            return model.sgd_step(w, None, x, y, batches, 0.1)
        finally:
            del model.cpu_workers_per_chunk
    return step


LR_CASES = [(100, 32)] + ([(10_000, 6)] if FULL else [])
LR_IMPLS = ("native kernel", "batched autograd", "gather the batch")


@pytest.mark.parametrize("m,batch", LR_CASES)
@pytest.mark.parametrize("impl", LR_IMPLS)
def test_lr_training_speed(benchmark, m, batch, impl):
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    model = models.get("lr", (1, 28, 28), 10)
    x, y, rng = _data((1, 28, 28), 10, 60_000)
    w = model.init(rng)
    batches = rng.integers(0, 60_000, (m, batch))
    fn = {"native kernel": lambda: model.sgd_step(w, None, x, y, batches, 0.1),
          "batched autograd": lambda: models.BatchedModel.sgd_step(model, w, None, x, y, batches, 0.1),
          "gather the batch": lambda: torch.index_select(x, 0, torch.from_numpy(batches.ravel()))}[impl]
    benchmark.group = f"LR local step, m = {m}, batch {batch}"
    benchmark.extra_info.update(model="lr", impl=impl, m=m, batch=batch)
    # Each call's result dropped before the next, as a simulation round drops U (the native
    # step then rewrites the previous array instead of faulting in a new one).
    def dropped() -> None:
        fn()

    benchmark.pedantic(dropped, rounds=ROUNDS if m > 1000 else 30, warmup_rounds=1, iterations=1)


DEEP_CASES = {"dnn": ((1, 28, 28), 10, 100 if FULL else 20),
              "resnet20": ((1, 64, 64) if FULL else (1, 32, 32), 8, 8 if FULL else 2)}
DEEP_IMPLS = ("sgd_step (CPU default)", "one pass", "per-worker loop")


@pytest.mark.parametrize("name", sorted(DEEP_CASES))
@pytest.mark.parametrize("impl", DEEP_IMPLS)
def test_deep_model_training_speed(benchmark, name, impl):
    set_threads(fedrobust.backend_info()["cpu"]["threads"])
    shape, classes, m = DEEP_CASES[name]
    if name == "dnn":  # the loop baseline takes a Simulation: its model and data for every impl
        sim = simbench.dnn_simulation(None, m)
        model, x, y, w = sim.model, sim.x_train, sim.y_train, sim.initial_state().w
    else:
        model = models.get(name, shape, classes)
        x, y, rng = _data(shape, classes, 32 * m)
        w = model.init(rng)
    batches = np.random.default_rng(1).permutation(32 * m).reshape(m, 32)
    if impl == "sgd_step (CPU default)":
        fn = lambda: model.sgd_step(w, None, x, y, batches, 0.1)  # noqa: E731
    elif impl == "one pass":
        fn = lambda: _one_pass(model)(w, x, y, batches)  # noqa: E731
    elif name == "dnn":
        fn = lambda: simbench.per_worker_dnn_updates(sim, w, batches)  # noqa: E731
    else:
        fn = lambda: simbench.per_worker_resnet20_updates(model, w, x, y, batches, 0.1)  # noqa: E731
    benchmark.group = f"{name} local step, {' x '.join(map(str, shape))}, m = {m}, batch 32"
    benchmark.extra_info.update(model=name, impl=impl, m=m, image=list(shape))
    benchmark.pedantic(fn, rounds=ROUNDS, warmup_rounds=1, iterations=1)
