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
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from fedrobust import data, models
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


def per_worker_sgd_updates(new_net: Callable[[], torch.nn.Module], w: torch.Tensor, x_all: torch.Tensor,
                           y_all: torch.Tensor, batches: np.ndarray, lr: float,
                           input_shape: Tuple[int, ...]) -> torch.Tensor:
    """(m, d) updates of one SGD step per worker, the way common FL simulators train: for each
    worker a fresh torch.nn model from new_net() (its parameters in the flat layout's order),
    loaded with w, and one optimizer, in a Python loop over the workers.
    batches: (m, B) example indices into x_all (-1 = empty slot); each example is reshaped to
    input_shape."""
    updates = []
    for chosen in batches:
        net = new_net()
        torch.nn.utils.vector_to_parameters(w.detach().clone(), net.parameters())
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        idx = torch.from_numpy(chosen[chosen >= 0])
        loss = torch.nn.functional.cross_entropy(net(x_all[idx].reshape(-1, *input_shape)), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        updates.append(torch.nn.utils.parameters_to_vector(net.parameters()).detach() - w)
    return torch.stack(updates)


def per_worker_dnn_updates(sim: Simulation, w: torch.Tensor, batches: np.ndarray) -> torch.Tensor:
    """`per_worker_sgd_updates` for the paper's DNN: one torch.nn model
    (conv30-relu-pool-conv50-relu-pool-fc200-relu-fcC, the layout of fedrobust.models.PaperDNN)
    per worker. batches: (m, B) example indices (-1 = empty slot), as sim.sample_indices draws them."""
    model, nn = sim.model, torch.nn
    c_in, k, pool = model.image_shape[0], model.kernel, model.pool
    flat = model.layout[4].shape[1]  # fc1.weight (HIDDEN, flat)

    def new_net() -> torch.nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, model.CONV1, k), nn.ReLU(), nn.MaxPool2d(pool),
                             nn.Conv2d(model.CONV1, model.CONV2, k), nn.ReLU(), nn.MaxPool2d(pool), nn.Flatten(),
                             nn.Linear(flat, model.HIDDEN), nn.ReLU(), nn.Linear(model.HIDDEN, model.num_classes))

    return per_worker_sgd_updates(new_net, w, sim.x_train, sim.y_train, batches, sim.learning_rate,
                                  model.image_shape)


class TorchResNet20(torch.nn.Module):
    """fedrobust.models.ResNet20 as one plain torch.nn model, its parameters registered in
    the flat layout's order (stem, then per block conv1, norm1, conv2, norm2 and the
    downsample branch, then fc), for the per-worker loop."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        nn, groups = torch.nn, model.norm_groups

        def conv_norm(c_in: int, c_out: int, k: int, stride: int) -> torch.nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.GroupNorm(groups, c_out))

        c0 = model.CHANNELS[0]
        self.stem = conv_norm(model.input_shape[0], c0, 3, 1)
        self.blocks = nn.ModuleList()
        c_prev = c0
        for _prefix, stride, downsample in model.blocks:
            c = c_prev * 2 if downsample else c_prev
            self.blocks.append(nn.ModuleList([conv_norm(c_prev, c, 3, stride), conv_norm(c, c, 3, 1)]
                                             + ([conv_norm(c_prev, c, 1, stride)] if downsample else [])))
            c_prev = c
        self.fc = nn.Linear(c_prev, model.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        relu = torch.nn.functional.relu
        h = relu(self.stem(x))
        for block in self.blocks:
            out = block[1](relu(block[0](h)))
            h = relu(out + (block[2](h) if len(block) == 3 else h))
        return self.fc(h.mean(dim=(2, 3)))


def per_worker_resnet20_updates(model: Any, w: torch.Tensor, x_all: torch.Tensor, y_all: torch.Tensor,
                                batches: np.ndarray, lr: float) -> torch.Tensor:
    """`per_worker_sgd_updates` for fedrobust.models.ResNet20: one TorchResNet20 per worker.
    batches: (m, B) example indices (-1 = empty slot)."""
    return per_worker_sgd_updates(lambda: TorchResNet20(model), w, x_all, y_all, batches, lr, model.input_shape)


def compare_resnet20_with_loop(workers: int, rounds: int, image: Tuple[int, int, int] = (1, 64, 64),
                               batch: int = 32) -> Dict[str, Any]:
    """One local SGD step of ResNet20 for `workers` workers on Gaussian images of shape
    `image` (default CH-MNIST's 1 x 64 x 64), 8 classes, `batch` examples each: the batched
    step against `per_worker_resnet20_updates` on the same minibatches."""
    model = models.get("resnet20", image, 8)
    rng = np.random.default_rng(0)
    n = workers * batch
    x_all = torch.from_numpy(rng.standard_normal((n, *image), dtype=np.float32))
    y_all = torch.from_numpy(rng.integers(0, 8, n))
    w = model.init(rng)
    batches = rng.permutation(n).reshape(workers, batch)
    batched = median_time(lambda: model.sgd_step(w, None, x_all, y_all, batches, 0.1), rounds)
    loop = median_time(lambda: per_worker_resnet20_updates(model, w, x_all, y_all, batches, 0.1), rounds)
    return {"image": list(image), "workers": workers, "batch": batch, "batched_seconds": batched,
            "loop_seconds": loop, "speedup": loop / batched}


def compare_dnn_with_loop(data_dir: Optional[str], workers: int, rounds: int) -> Dict[str, Any]:
    """One local SGD step of the paper's DNN for `workers` workers, batch 32, on MNIST (without
    data_dir: Gaussian data of MNIST's shape, 1 x 28 x 28): the batched step against
    `per_worker_dnn_updates` on the same minibatches."""
    sim = dnn_simulation(data_dir, workers)
    w = sim.initial_state().w
    batches = sim.sample_indices(np.arange(workers), np.random.default_rng(0))
    batched = median_time(lambda: sim.model.sgd_step(w, None, sim.x_train, sim.y_train, batches,
                                                     sim.learning_rate), rounds)
    loop = median_time(lambda: per_worker_dnn_updates(sim, w, batches), rounds)
    return {"dataset": sim.dataset.name, "workers": workers, "batched_seconds": batched, "loop_seconds": loop,
            "speedup": loop / batched}


def dnn_simulation(data_dir: Optional[str], workers: int) -> Simulation:
    """The paper's DNN on MNIST (data_dir) or on Gaussian data of MNIST's shape (1, 28, 28)."""
    config = Config(dataset="mnist" if data_dir else "synthetic", data_dir=data_dir, model="dnn", workers=workers,
                    compromised=0, out=None)
    if data_dir:
        return Simulation(config, progress=False)
    flat = data.synthetic(n_train=10_000, n_test=100)
    images = data.Dataset("synthetic", flat.x_train.reshape(-1, 1, 28, 28), flat.y_train,
                          flat.x_test.reshape(-1, 1, 28, 28), flat.y_test, flat.num_classes, (1, 28, 28),
                          "data.synthetic's Gaussian classes as 1 x 28 x 28 images")
    return Simulation(config, progress=False, dataset=images)


def round_split(sim: Simulation, state: Any, rounds: int) -> Dict[str, float]:
    """Median seconds of a whole no-attack round and of its parts, each timed alone on the
    round's own inputs: sample (the minibatch indices), train (the workers' SGD step with
    its non-finite rows flagged, as the round asks: the LR kernel flags them as it writes U,
    other models check U after their step), aggregate (the rule on U); other = round - their
    sum."""
    rng = np.random.default_rng(0)
    workers = np.arange(sim.config.workers)
    batches = sim.sample_indices(workers, rng)
    lr = sim.learning_rate
    nonfinite = np.zeros(workers.size, dtype=bool)

    def train() -> torch.Tensor:
        return sim.model.sgd_step(state.w, None, sim.x_train, sim.y_train, batches, lr, nonfinite)

    U = train()
    parts = {"sample": median_time(lambda: sim.sample_indices(workers, rng), rounds),
             "train": median_time(train, rounds),
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


def run(data_dir: Optional[str], workers: List[int], log: Callable[[str], None] = print,
        dnn_workers: int = 100, resnet_workers: int = 8,
        resnet_image: Tuple[int, int, int] = (1, 64, 64)) -> dict:
    """`compare_with_loop` (m = 100), `compare_dnn_with_loop` (dnn_workers),
    `compare_resnet20_with_loop` (resnet_workers, resnet_image) and `scaling` over `workers`,
    with torch's thread count."""
    log("timing: batched round vs per-worker loop (m = 100)")
    loop = compare_with_loop(data_dir)
    log(f"timing: the DNN's batched step vs a per-worker loop (m = {dnn_workers})")
    dnn = compare_dnn_with_loop(data_dir, dnn_workers, rounds=3)
    log(f"timing: ResNet20's batched step vs a per-worker loop (m = {resnet_workers})")
    resnet = compare_resnet20_with_loop(resnet_workers, rounds=3, image=resnet_image)
    log(f"timing: rounds for m = {workers}")
    return {"threads": torch.get_num_threads(), "loop": loop, "dnn_loop": dnn, "resnet20_loop": resnet,
            "scaling": scaling(workers)}
