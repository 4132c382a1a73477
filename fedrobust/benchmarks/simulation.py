"""Simulation throughput: batched training of all workers against a per-worker loop, and
the time of one round as the number of workers grows (``fedrobust bench --simulation``).

Every figure is the median time of `rounds` rounds after one warm-up round, measured in
this process: a round is local training (one SGD step per worker, batch 32), the
aggregation rule and the global update; evaluation is not included. `round_split` times the
parts of a round one by one (drawing the minibatches, training, the non-finite check, the
rule); "other" is the whole round less those parts.
`report.format_simulation_report` prints the result of `run`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from fedrobust import aggregators, data
from fedrobust.benchmarks.timing import median_time
from fedrobust.simulation import Config, Simulation


def per_worker_loop_round(sim: Simulation, w: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """One round the way common FL simulators run it: one torch model and one SGD optimizer per
    worker, trained in a Python loop, then the same aggregation rule. LR models only."""
    ds = sim.dataset
    features = int(np.prod(ds.input_shape))
    workers = np.arange(sim.config.workers)
    x, y, weight = sim.sample_batches(workers, rng)
    updates = []
    for i in workers:
        model = torch.nn.Linear(features, ds.num_classes)
        with torch.no_grad():  # the flat layout of fedrobust.models: weight (C, F) then bias (C,)
            model.weight.copy_(w[: features * ds.num_classes].view(ds.num_classes, features))
            model.bias.copy_(w[features * ds.num_classes:])
        opt = torch.optim.SGD(model.parameters(), lr=sim.learning_rate)
        keep = weight[i] > 0
        loss = torch.nn.functional.cross_entropy(model(x[i][keep].flatten(1)), y[i][keep])
        opt.zero_grad()
        loss.backward()
        opt.step()
        updates.append(torch.cat([model.weight.detach().flatten(), model.bias.detach()]) - w)
    U = torch.stack(updates).numpy()
    return w + torch.from_numpy(np.asarray(sim.rule(U)))


def round_split(sim: Simulation, state: Any, rounds: int) -> Dict[str, float]:
    """Median seconds of a whole no-attack round and of its parts, each timed alone on the
    round's own inputs: sample (the minibatch indices), train (the workers' SGD step), check
    (the non-finite rows of U), aggregate (the rule on U); other = round - their sum."""
    rng = np.random.default_rng(0)
    workers = np.arange(sim.config.workers)
    batches = sim.sample_indices(workers, rng)
    lr = sim.learning_rate

    def train() -> torch.Tensor:
        return sim.model.sgd_step(state.w, None, sim.x_train, sim.y_train, batches, lr)

    U = train()
    parts = {"sample": median_time(lambda: sim.sample_indices(workers, rng), rounds),
             "train": median_time(train, rounds),
             "check": median_time(lambda: aggregators.nonfinite_workers(U), rounds),
             "aggregate": median_time(lambda: sim.rule(U), rounds)}
    whole = median_time(lambda: sim.step(state), rounds)
    return {"round": whole, **parts, "other": whole - sum(parts.values())}


def compare_with_loop(data_dir: Optional[str], rounds: int = 10) -> Dict[str, float]:
    """MNIST (or synthetic MNIST-shaped data without data_dir) LR, m = 100, median."""
    dataset = "mnist" if data_dir else "synthetic"
    sim = Simulation(Config(dataset=dataset, data_dir=data_dir, workers=100, compromised=20,
                            rule="median", lr=0.1, out=None), progress=False)
    state = sim.initial_state()
    batched = median_time(lambda: sim.step(state), rounds)
    rng = np.random.default_rng(0)
    w = state.w.clone()
    loop = median_time(lambda: per_worker_loop_round(sim, w, rng), rounds)
    return {"dataset": dataset, "workers": 100, "batched_seconds": batched, "loop_seconds": loop,
            "batched_rounds_per_second": 1 / batched, "speedup": loop / batched,
            "split": round_split(sim, state, rounds)}


def scaling(workers: List[int], rounds: int = 3) -> List[Dict[str, float]]:
    """Seconds per round of LR on synthetic MNIST-shaped data (60,000 examples), median rule."""
    rows = []
    dataset = data.synthetic(n_train=60_000, n_test=1_000)
    for m in workers:
        sim = Simulation(Config(dataset="synthetic", workers=m, compromised=m // 5, rule="median",
                                lr=0.1, out=None), progress=False, dataset=dataset)
        state = sim.initial_state()
        seconds = median_time(functools.partial(sim.step, state), rounds)  # bound now, not at the loop's end
        rows.append({"workers": m, "seconds_per_round": seconds, "rounds_per_second": 1 / seconds,
                     "split": round_split(sim, state, rounds)})
    return rows


def run(data_dir: Optional[str], workers: List[int], log: Callable[[str], None] = print) -> dict:
    """`compare_with_loop` (m = 100) and `scaling` over `workers`, with torch's thread count."""
    log("timing: batched round vs per-worker loop (m = 100)")
    loop = compare_with_loop(data_dir)
    log(f"timing: rounds for m = {workers}")
    return {"threads": torch.get_num_threads(), "loop": loop, "scaling": scaling(workers)}
