"""One simulation's local training spread over Ray actors (`fedrobust run --ray [ADDRESS]`).

The m workers are cut into K contiguous blocks of worker ids, one per actor. An actor holds
its block's training examples (a copy of those rows of the training set, labels as the run
trains on them, label flips included) and the model; each round it receives the global model
w (one object in Ray's object store, shared by all actors) and, for each local SGD round,
its selected workers' minibatch indices, trains them batched (the model's own sgd_step) and
returns its (m_k, d) block of updates, which the driver reads zero-copy from the object
store and stacks in worker order. The driver draws every random number (the workers
selected, the minibatches) exactly as a single-process run does, and runs the attack, the
defense, the aggregation and the evaluation itself:

    driver: workers, batches[l] for l < local_rounds   (the run's generator, same draws)
    actor k: U_k = sgd_step(... sgd_step(w, None, x_k, y_k, batches_k[0]) ..., batches_k[L-1])
    driver: U = [U_1; ...; U_K]  ->  attack, defense, w + A(U)  (fedrobust.simulation)

Per worker, sgd_step computes on that worker's rows only, so the blocks are the rows a
single process computes: the same results bit for bit at the same threads per actor as the
single process uses (the LR kernel is per worker; torch's batched DNN kernels can round
differently at another thread count or batch of workers, see the README).
"""
from __future__ import annotations

import dataclasses
from typing import Any, List, Optional, Sequence

import numpy as np
import torch

from fedrobust.executors import connect_ray


@dataclasses.dataclass(frozen=True)
class OnRay:
    """Where a run's local training goes: `actors` Ray actors of `threads` CPUs each, on the
    cluster at `address` (None: a Ray started here)."""

    address: Optional[str] = None
    actors: int = 2
    threads: int = 1


def check_cluster_fits(ray: Any, actors: int, threads: int) -> None:
    """ValueError unless the connected Ray cluster has actors * threads CPUs (Ray would wait
    for CPUs that never come)."""
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if actors * threads > cpus:
        raise ValueError(f"{actors} actors of {threads} CPUs need {actors * threads} CPUs; the Ray cluster has "
                         f"{cpus}: lower --actors or --threads")


class ShardTrainer:
    """The actor's work: local SGD of one block of workers on the examples they hold.

    x (n_k, *input_shape), y (n_k,): the block's examples (rows of the training set, in
    ascending global index, so `examples` maps global index -> local row by search)."""

    def __init__(self, model: str, input_shape: Sequence[int], num_classes: int, examples: np.ndarray,
                 x: np.ndarray, y: np.ndarray, threads: int):
        from fedrobust import models
        from fedrobust._native import set_threads

        set_threads(threads)  # fedrobust's kernels and torch
        self.model = models.get(model, tuple(input_shape), num_classes)
        self.examples = np.asarray(examples, dtype=np.int64)
        self.x = torch.from_numpy(np.array(x, copy=True))  # the actor's own, writable copy
        self.y = torch.from_numpy(np.array(y, copy=True))

    def ready(self) -> bool:
        """True once the actor is constructed (the driver waits on it before the first round)."""
        return True

    def updates(self, w: np.ndarray, batches: List[np.ndarray], lr: float) -> np.ndarray:
        """(m_k, d) float updates of the block's selected workers: len(batches) local SGD rounds
        from w, batches[l] (m_k, B) global example indices (-1 = empty slot)."""
        w = torch.from_numpy(np.array(w, copy=True))
        U = None
        for chosen in batches:
            local = np.where(chosen >= 0, np.searchsorted(self.examples, np.maximum(chosen, 0)), -1)
            U = self.model.sgd_step(w, U, self.x, self.y, local, lr)
        return U.numpy()


class RayTraining:
    """local_updates over `actors` Ray actors (see the module docstring).

    parts: each worker's training example indices (the run's partition); x_train, y_train the
    training set the run trains on; `threads` CPUs (and threads) per actor."""

    def __init__(self, address: Optional[str], actors: int, threads: int, model: str, input_shape: Sequence[int],
                 num_classes: int, parts: Sequence[np.ndarray], x_train: np.ndarray, y_train: np.ndarray):
        if actors < 1 or threads < 1:
            raise ValueError(f"--actors and --threads must be >= 1, got {actors} and {threads}")
        workers = len(parts)
        actors = min(actors, workers)
        self.ray = connect_ray(address)
        check_cluster_fits(self.ray, actors, threads)
        remote = self.ray.remote(num_cpus=threads)(ShardTrainer)
        # Worker w belongs to block k when bounds[k] <= w < bounds[k + 1].
        self.bounds = np.array([workers * k // actors for k in range(actors + 1)])
        self.actors = []
        for k in range(actors):
            block = parts[self.bounds[k]:self.bounds[k + 1]]
            examples = np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in block]))  # block: >= 1 worker
            self.actors.append(remote.remote(model, tuple(input_shape), num_classes, examples,
                                             x_train[examples], y_train[examples], threads))
        self.ray.get([actor.ready.remote() for actor in self.actors])  # started (not counted in the rounds' time)

    def updates(self, w: torch.Tensor, workers: np.ndarray, batches: List[np.ndarray], lr: float) -> torch.Tensor:
        """(m, d) updates of the selected `workers` (ascending ids), in their order."""
        w_ref = self.ray.put(w.cpu().numpy())
        block = np.searchsorted(self.bounds, workers, side="right") - 1  # each selected worker's actor
        refs = []
        for k, actor in enumerate(self.actors):
            rows = np.flatnonzero(block == k)
            if rows.size:
                refs.append(actor.updates.remote(w_ref, [b[rows] for b in batches], lr))
        blocks = self.ray.get(refs)  # read-only numpy views of the object store
        return torch.from_numpy(np.concatenate(blocks) if len(blocks) > 1 else np.array(blocks[0], copy=True))

    def close(self) -> None:
        """Stop the actors (Ray itself stays up for whoever started it)."""
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []
