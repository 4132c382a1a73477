"""The federated-learning round loop (SPEC sections 1, 8 and 13).

One round, for the m workers selected (all, or a random subset):

    W = w repeated m times                       (m, d) torch tensor, one row per worker
    for each local SGD round:                    one batched forward/backward for all workers
        W -= lr * grad(W; each worker's own minibatch)
    U = W - w                                    updates (m, d)     [SPEC 13 item 1]
    U = attack(U, ...)                           rewrites the compromised rows (hook)
    U = U[defense(U, ...)]                       keeps rows (hook)
    w = w + A(U)                                 A = fedrobust.aggregators rule

The compromised workers are workers 0 .. c-1 of the partition, which lists
the workers in a random order (SPEC 8.4), so they come from random groups.

Results are never lost: `config.json` (every setting, the seed, the
fedrobust version) at the start, one line of `rounds.jsonl` per evaluated
round as it happens, an atomic checkpoint every `checkpoint_every` rounds, and
`summary.json` and `best_model.npy` (the global model with the lowest
test error, the paper's Table 3 strategy) at the end. `run(config)` on a directory with a checkpoint of
the same configuration continues from it and ends with the same numbers as an
uninterrupted run.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Protocol

import numpy as np
import torch

import fedrobust
from fedrobust import aggregators, attacks, data, models
from fedrobust.attacks import ATTACKS, Attack, AttackContext, AttackOptions

CHECKPOINT = "checkpoint.npz"
VALIDATION_SIZE = 100  # examples of the test split a defense validates on (SPEC 13 item 11)
BEST_MODEL = "best_model.npy"  # the global model of best_round, (d,) float32


@dataclasses.dataclass
class Config:
    """Every setting of a run. `fedrobust run --help` documents each flag."""

    dataset: str = "digits"
    model: str = "lr"
    rule: str = "median"
    beta: Optional[int] = None  # trimmed mean: values removed at each end; None = c
    krum_distance: str = "squared"  # "squared" (Blanchard et al.) or "plain" (Fang et al.'s text)
    attack: str = "none"  # none, gaussian, labelflip, krum, trim (fedrobust.attacks)
    knowledge: str = "full"
    attack_rule: Optional[str] = None  # the rule the attacker assumes; None: krum for the Krum attack, else rule
    attack_fraction: float = 1.0  # fraction of rounds attacked, drawn at random per round (Figure 5c)
    epsilon: float = 0.01  # Krum attack: supporters within this distance of the crafted model
    goal: str = "directed"  # "directed" (SPEC 4) or "deviation" (Appendix B)
    direction: str = "rule"  # full knowledge: sign of the assumed rule's output, "mean" (benign) or "sum"
    on_failure: str = "last"  # Krum attack without a lambda: send the "last" crafted model or "benign"
    trim_reference: str = "model"  # trim attack b-interval on "model" values (paper) or "update" values
    trim_b: float = 2.0  # trim attack, full knowledge: the interval factor b
    workers: int = 100
    compromised: int = 20
    sample: Optional[int] = None  # workers selected per round; None = all
    local_rounds: int = 1
    q: float = 0.5
    rounds: int = 200
    lr: Optional[float] = None  # None: the preset of DEFAULT_LR for the dataset
    batch_size: int = 32
    eval_every: int = 10
    seed: int = 0
    data_dir: Optional[str] = None
    out: Optional[str] = None
    device: str = "cpu"
    checkpoint_every: int = 50

    def validate(self) -> None:
        """Raise ValueError naming the setting for any value a run cannot use."""
        _check(self.workers >= 1, "workers", "must be >= 1", self.workers)
        _check(0 <= self.compromised, "compromised", "must be >= 0", self.compromised)
        _check(2 * self.compromised < self.workers, "compromised",
               f"must be < workers / 2 = {self.workers / 2:g} (the rules need an honest majority)",
               self.compromised)
        m = self.selected_per_round()
        _check(1 <= m <= self.workers, "sample", f"must be in [1, workers = {self.workers}]", self.sample)
        _check(0.0 <= self.q <= 1.0, "q", "(degree of non-IID) must be in [0, 1]", self.q)
        _check(self.rounds >= 1, "rounds", "must be >= 1", self.rounds)
        _check(self.local_rounds >= 1, "local_rounds", "must be >= 1", self.local_rounds)
        _check(self.batch_size >= 1, "batch_size", "must be >= 1", self.batch_size)
        _check(self.eval_every >= 1, "eval_every", "must be >= 1", self.eval_every)
        _check(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1", self.checkpoint_every)
        _check(self.lr is None or (math.isfinite(self.lr) and self.lr > 0), "lr",
               "must be a positive number", self.lr)
        _check(self.krum_distance in ("squared", "plain"), "krum_distance",
               "must be 'squared' or 'plain'", self.krum_distance)
        _check(self.attack in ATTACKS, "attack", f"must be one of {sorted(ATTACKS)}", self.attack)
        _check(self.knowledge in ("full", "partial"), "knowledge", "must be 'full' or 'partial'",
               self.knowledge)
        _check(self.device in ("cpu", "cuda"), "device", "must be 'cpu' or 'cuda'", self.device)
        if self.device == "cuda":
            self._validate_cuda()
        _check(self.dataset in data.DATASETS, "dataset", f"must be one of {sorted(data.DATASETS)}",
               self.dataset)
        _check(self.model in models.MODELS, "model", f"must be one of {sorted(models.MODELS)}", self.model)
        _check(self.rule in aggregators.available(), "rule",
               f"must be one of {aggregators.available()}", self.rule)
        self._check_rule_fits(self.rule, "rule", m)
        self._validate_attack(m)

    def _validate_cuda(self) -> None:
        """What the all-GPU path covers: a visible device, every rule and every attack (Krum,
        Bulyan and the Krum attack within the sizes of their CUDA kernels; labelflip poisons the
        data)."""
        from fedrobust._native import cuda

        _check(cuda is not None and cuda.device_count() > 0 and torch.cuda.is_available(), "device",
               "'cuda' needs a visible CUDA device, fedrobust's CUDA module and a CUDA build of torch "
               "(see `fedrobust info`)", self.device)
        m = self.selected_per_round()
        distances = self.rule in ("krum", "bulyan") or self.attack == "krum"
        _check(not distances or m <= cuda.max_distance_rows, "workers",
               f"(per round) must be at most {cuda.max_distance_rows} for Krum, Bulyan and the Krum attack on CUDA",
               m)
        _check(self.rule != "bulyan" or m - 2 * self.compromised <= cuda.sort_rows, "workers",
               f"(per round) minus 2 * compromised must be at most {cuda.sort_rows} for Bulyan on CUDA", m)

    def _check_rule_fits(self, rule: str, setting: str, m: int) -> None:
        """The rule's parameters (c, beta) must be valid for m workers per round."""
        c = self.compromised
        if rule == "trimmed_mean":
            beta = self.trim_beta()
            _check(beta >= 0 and 2 * beta < m, "beta",
                   f"must satisfy 0 <= beta and 2*beta < workers per round = {m} (for {setting} trimmed_mean)", beta)
        if rule == "krum":
            _check(m > 2 * c + 2, "compromised",
                   f"(c) must satisfy workers per round > 2c + 2 for Krum ({setting}; workers per round = {m})", c)
        if rule == "bulyan":
            _check(m >= 4 * c + 3, "compromised",
                   f"(c) must satisfy workers per round >= 4c + 3 for Bulyan ({setting}; workers per round = {m})", c)

    def _validate_attack(self, m: int) -> None:
        c = self.compromised
        _check(self.attack == "none" or c >= 1, "compromised", f"must be >= 1 for attack {self.attack!r}", c)
        _check(self.attack_rule is None or self.attack_rule in aggregators.available(), "attack_rule",
               f"must be one of {aggregators.available()}", self.attack_rule)
        _check(0.0 <= self.attack_fraction <= 1.0, "attack_fraction", "must be in [0, 1]", self.attack_fraction)
        _check(math.isfinite(self.epsilon) and self.epsilon >= 0, "epsilon", "must be >= 0", self.epsilon)
        _check(self.goal in attacks.GOALS, "goal", f"must be one of {list(attacks.GOALS)}", self.goal)
        _check(self.direction in attacks.DIRECTIONS, "direction", f"must be one of {list(attacks.DIRECTIONS)}",
               self.direction)
        _check(self.on_failure in attacks.ON_FAILURE, "on_failure", f"must be one of {list(attacks.ON_FAILURE)}",
               self.on_failure)
        _check(self.trim_reference in attacks.TRIM_REFERENCES, "trim_reference",
               f"must be one of {list(attacks.TRIM_REFERENCES)}", self.trim_reference)
        _check(math.isfinite(self.trim_b) and self.trim_b > 1, "trim_b", "must be > 1", self.trim_b)
        _check(self.attack != "labelflip" or self.attack_fraction == 1.0, "attack_fraction",
               "must be 1 for labelflip (the compromised workers' data is poisoned in every round)",
               self.attack_fraction)
        if self.attack not in ("krum", "trim"):
            return
        _check(self.goal == "directed" or self.knowledge == "full" or self.attack == "krum", "goal",
               "'deviation' with the trim attack needs knowledge 'full' (it uses the benign extremes)", self.goal)
        self._check_rule_fits(self.assumed_rule(), "attack_rule", m)
        if self.attack == "krum" and self.knowledge == "full":
            self._check_rule_fits("krum", "the Krum attack's simulated Krum", m)
        if self.attack == "krum" and self.knowledge == "partial":
            _check(c >= 2, "compromised",
                   "must be >= 2 for the partial-knowledge Krum attack (it needs c - 1 >= 1 supporters)", c)

    def learning_rate(self) -> float:
        return DEFAULT_LR.get(self.dataset, 0.1) if self.lr is None else self.lr

    def selected_per_round(self) -> int:
        return self.workers if self.sample is None else self.sample

    def trim_beta(self) -> int:
        return self.compromised if self.beta is None else self.beta

    def rule_params(self, rule: Optional[str] = None) -> Dict[str, Any]:
        """The parameters of `rule` (default: the server's): the server knows c (SPEC 3); beta
        defaults to c."""
        squared = self.krum_distance == "squared"
        return {
            "mean": {},
            "median": {},
            "trimmed_mean": {"beta": self.trim_beta()},
            "krum": {"c": self.compromised, "squared": squared},
            "bulyan": {"c": self.compromised, "squared": squared},
        }[rule or self.rule]

    def assumed_rule(self) -> str:
        """The rule the attacker crafts against: attack_rule, else Krum for the Krum attack and
        the server's rule (known, SPEC 3) for the others."""
        if self.attack_rule:
            return self.attack_rule
        return "krum" if self.attack == "krum" else self.rule

    def attack_options(self) -> AttackOptions:
        return AttackOptions(epsilon=self.epsilon, goal=self.goal, direction=self.direction,
                             on_failure=self.on_failure, trim_reference=self.trim_reference, b=self.trim_b,
                             krum_squared=self.krum_distance == "squared")

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known settings: {sorted(names)}")
        return cls(**values)


# Local SGD learning rates on batch-mean gradients (the paper does not state its rate;
# SPEC 1, 13 item 2). MNIST / Fashion-MNIST: 0.1, the public reference code's 0.003 on
# MXNet's batch-SUMMED gradients with batch 32 (= 0.096 on the mean); with it MNIST LR
# under the median with m = 100, q = 0.5, 500 rounds ends at 0.133 test error (the
# paper's no-attack figures are 0.12-0.14). digits (pixels / 16, about 14 examples per
# worker): 0.5, which converges within the 200 default rounds.
DEFAULT_LR: Dict[str, float] = {"mnist": 0.1, "fashion_mnist": 0.1, "digits": 0.5}


def _check(ok: bool, name: str, requirement: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"setting {name!r} {requirement}; got {value!r}")


# ---------------------------------------------------------------------------
# Hooks: attacks (fedrobust.attacks) rewrite the compromised rows, defenses choose the rows kept.
# ---------------------------------------------------------------------------
class Defense(Protocol):
    def __call__(self, updates: np.ndarray, evaluate: Callable[[np.ndarray], tuple]) -> np.ndarray:
        """Return the indices of the rows kept. evaluate(update) -> (error, loss) of the global
        model moved by `update`, on the validation set: 100 test examples, which are then left
        out of the reported test error."""


# ---------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class _State:
    """Everything that changes from round to round (what a checkpoint holds)."""

    w: torch.Tensor  # (d,) global model
    round: int  # rounds completed
    rng: np.random.Generator  # worker selection, minibatches, attacks
    best_error: float = math.inf
    best_round: int = 0
    best_w: Optional[torch.Tensor] = None  # the global model with the lowest test error (Table 3)
    seconds: float = 0.0  # training time so far (not counting evaluation)
    pending: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # attack metrics since the last line


class Simulation:
    """A configured run: data, partition, model, rule. `run()` trains and writes results."""

    def __init__(self, config: Config, attack: Optional[Attack] = None,
                 defense: Optional[Defense] = None, progress: bool = True,
                 dataset: Optional[data.Dataset] = None):
        """`dataset` replaces the one config.dataset names (a user's own data)."""
        config.validate()
        if config.device == "cuda" and (defense is not None or attack is not None):
            raise ValueError("device 'cuda' runs without a defense or a custom attack in this build "
                             "(their hooks take CPU arrays); use device 'cpu'")
        self.config = config
        self.progress = progress
        self.attack = attack or ATTACKS[config.attack]
        self.defense = defense
        # partition, init, training, validation, attack draws
        seeds = np.random.SeedSequence(config.seed).spawn(5)
        self.dataset = dataset or data.load(config.dataset, data_dir=config.data_dir, seed=config.seed)
        ds = self.dataset
        self.parts = data.partition(ds.y_train, config.workers, ds.num_classes, config.q,
                                    np.random.default_rng(seeds[0]))
        self.model = models.get(config.model, ds.input_shape, ds.num_classes)
        self.rule = aggregators.get(config.rule, **config.rule_params())
        self.device = torch.device(config.device)
        self.x_train = torch.from_numpy(ds.x_train).to(self.device)
        self.y_train = torch.from_numpy(self._training_labels()).to(self.device)
        test = np.arange(len(ds.y_test))
        if defense is not None:  # SPEC 13 item 11: 100 test examples become the validation set
            test = np.random.default_rng(seeds[3]).permutation(test)
            self.x_val = torch.from_numpy(ds.x_test[test[:VALIDATION_SIZE]]).to(self.device)
            self.y_val = torch.from_numpy(ds.y_test[test[:VALIDATION_SIZE]]).to(self.device)
            test = np.sort(test[VALIDATION_SIZE:])
        self.x_test = torch.from_numpy(ds.x_test[test]).to(self.device)
        self.y_test = torch.from_numpy(ds.y_test[test]).to(self.device)
        # Padded (workers, n_max) table of each worker's example indices (-1 = none).
        self.local_sizes = np.array([len(p) for p in self.parts])
        self.local_index = np.full((config.workers, max(int(self.local_sizes.max()), 1)), -1, dtype=np.int64)
        for i, p in enumerate(self.parts):
            self.local_index[i, : len(p)] = p
        self._init_seed = seeds[1]
        self._train_seed = seeds[2]
        self._attack_seed = int(seeds[4].generate_state(1, np.uint64)[0])

    def _training_labels(self) -> np.ndarray:
        """The labels the workers train on: with the labelflip attack, the compromised workers'
        examples carry L - 1 - l (SPEC 7)."""
        y = self.dataset.y_train
        if self.config.attack != "labelflip":
            return y
        y = y.copy()
        for worker in range(self.config.compromised):
            y[self.parts[worker]] = attacks.flip_labels(y[self.parts[worker]], self.dataset.num_classes)
        return y

    def attacked(self, round_index: int) -> bool:
        """Whether round `round_index` is attacked: always with attack_fraction 1, else a draw
        keyed by (seed, round) so that the attacked rounds do not depend on anything else."""
        cfg = self.config
        if cfg.attack == "none" or cfg.attack_fraction <= 0:
            return False
        if cfg.attack_fraction >= 1:
            return True
        return bool(np.random.default_rng([self._attack_seed, round_index]).random() < cfg.attack_fraction)

    # -- one round ---------------------------------------------------------
    def sample_indices(self, workers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Minibatch example indices for the given workers: (m, B) int64, -1 = empty slot.

        Each worker draws min(batch_size, local size) of its examples without
        replacement (SPEC 13 item 10); the rest of its B slots are -1.
        B = min(batch_size, the largest local set of any worker).
        """
        table = self.local_index[workers]
        B = min(self.config.batch_size, table.shape[1])
        keys = rng.random(table.shape)
        keys[table < 0] = np.inf
        order = np.argpartition(keys, B - 1, axis=1)[:, :B] if table.shape[1] > B else np.argsort(keys, axis=1)
        return np.take_along_axis(table, order, axis=1)

    def sample_batches(self, workers: np.ndarray, rng: np.random.Generator):
        """The examples of sample_indices: x (m, B, ...), y (m, B), weight (m, B) (0 = empty slot)."""
        chosen = self.sample_indices(workers, rng)
        valid = chosen >= 0
        idx = torch.from_numpy(np.where(valid, chosen, 0).ravel()).to(self.device)
        x = torch.index_select(self.x_train, 0, idx).view(*chosen.shape, *self.x_train.shape[1:])
        y = torch.index_select(self.y_train, 0, idx).view(chosen.shape)
        return x, y, torch.from_numpy(valid.astype(np.float32)).to(self.device)

    def local_updates(self, w: torch.Tensor, workers: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """(m, d) updates: local SGD from w for every selected worker at once
        (model.sgd_step accumulates U_i -= lr * grad_i, starting from U = 0)."""
        lr = self.config.learning_rate()
        U = None
        for _ in range(self.config.local_rounds):
            U = self.model.sgd_step(w, U, self.x_train, self.y_train, self.sample_indices(workers, rng), lr)
        return U

    def step(self, state: _State) -> Dict[str, Any]:
        """Run one round in place on `state`; return the round's metrics."""
        cfg = self.config
        rng = state.rng
        m = cfg.selected_per_round()
        workers = np.arange(cfg.workers) if m == cfg.workers else np.sort(
            rng.choice(cfg.workers, size=m, replace=False))
        U = self.local_updates(state.w, workers, rng)
        U = U.numpy() if U.device.type == "cpu" else U  # CUDA: the updates stay on the device
        compromised = np.flatnonzero(workers < cfg.compromised)
        metrics: Dict[str, Any] = {"empty_workers": int((self.local_sizes[workers] == 0).sum())}
        round_metrics: Dict[str, Any] = {"round": state.round + 1}
        if compromised.size and self.attacked(state.round):
            round_metrics["attacked"] = True
            if cfg.attack != "labelflip" or self.attack is not ATTACKS["labelflip"]:  # labelflip poisoned the data
                rule = cfg.assumed_rule()
                on_cpu = isinstance(U, np.ndarray)
                ctx = AttackContext(U, compromised, state.w.numpy() if on_cpu else state.w, rule,
                                    cfg.rule_params(rule), cfg.knowledge, rng, state.round, seed=self._attack_seed,
                                    worker_ids=workers, lr=cfg.learning_rate(), options=cfg.attack_options())
                U[compromised if on_cpu else torch.from_numpy(compromised).to(U.device)] = self.attack(ctx)
                round_metrics.update(ctx.metrics)
        else:
            round_metrics["attacked"] = False
        if self.defense is not None:
            U = U[self.defense(U, lambda u: self.model.evaluate(state.w + torch.from_numpy(u),
                                                                self.x_val, self.y_val))]
        bad = aggregators.nonfinite_workers(U)
        if bad.size:
            metrics["nonfinite_workers"] = bad.tolist()
        aggregate = self._aggregate(U, compromised, round_metrics)
        state.w = state.w + (aggregate if isinstance(aggregate, torch.Tensor) else torch.from_numpy(np.asarray(aggregate)))
        if cfg.attack != "none":
            state.pending.append(round_metrics)
        state.round += 1
        return metrics

    def _aggregate(self, U: np.ndarray, compromised: np.ndarray, round_metrics: Dict[str, Any]) -> np.ndarray:
        """The rule's output; for Krum and Bulyan also which rows were selected (how many of
        them compromised) into round_metrics. Row indices refer to U as aggregated."""
        cfg = self.config
        if cfg.rule == "krum" and self.defense is None:
            chosen = int(aggregators.krum_select(U, **cfg.rule_params())[0])
            round_metrics["krum_selected_compromised"] = bool(np.isin(chosen, compromised))
            return U[chosen]
        if cfg.rule == "bulyan" and self.defense is None:
            aggregate, chosen = aggregators.bulyan_with_selection(U, **cfg.rule_params())
            round_metrics["bulyan_selected_compromised"] = int(np.isin(chosen, compromised).sum())
            return aggregate
        return self.rule(U)

    # -- the whole run -----------------------------------------------------
    def initial_state(self) -> _State:
        w = self.model.init(np.random.default_rng(self._init_seed)).to(self.device)
        return _State(w=w, round=0, rng=np.random.default_rng(self._train_seed))

    def evaluate(self, w: torch.Tensor):
        return self.model.evaluate(w, self.x_test, self.y_test)

    def run(self) -> Dict[str, Any]:
        """Train for config.rounds rounds (continuing from a checkpoint in config.out if there is
        one), write the results and return the summary."""
        cfg = self.config
        out = cfg.out
        state = None
        if out:
            os.makedirs(out, exist_ok=True)
            state = load_checkpoint(out, cfg)
            if state is None:
                _write_json(os.path.join(out, "config.json"), self.describe())
                open(os.path.join(out, "rounds.jsonl"), "w").close()
            else:
                _truncate_rounds(os.path.join(out, "rounds.jsonl"), state.round)
        if state is None:
            state = self.initial_state()
        error, loss = math.nan, math.nan
        lines: List[Dict[str, Any]] = []  # the lines of rounds.jsonl written by this call
        start_round, start_seconds = state.round, state.seconds
        while state.round < cfg.rounds:
            t0 = time.perf_counter()
            metrics = self.step(state)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the round's kernels count in its time
            state.seconds += time.perf_counter() - t0
            if state.round % cfg.eval_every == 0 or state.round == cfg.rounds:
                error, loss = self.evaluate(state.w)
                if error < state.best_error:
                    state.best_error, state.best_round, state.best_w = error, state.round, state.w.clone()
                line = {"round": state.round, "test_error": error, "test_loss": loss,
                        "seconds": round(state.seconds, 6), **metrics}
                if cfg.attack != "none":
                    line["attack"], state.pending = state.pending, []
                lines.append(line)
                if out:
                    with open(os.path.join(out, "rounds.jsonl"), "a") as f:
                        f.write(json.dumps(line) + "\n")
                self._report(state, error, start_round, start_seconds)
            if out and (state.round % cfg.checkpoint_every == 0 or state.round == cfg.rounds):
                save_checkpoint(out, state)
        if math.isnan(error):  # resumed at the end: evaluate the final model once more
            error, loss = self.evaluate(state.w)
        summary = {
            "final_test_error": error,
            "final_test_loss": loss,
            "best_test_error": state.best_error,
            "best_round": state.best_round,
            "rounds": state.round,
            "rounds_per_second": state.round / state.seconds if state.seconds > 0 else None,
            "train_seconds": state.seconds,
        }
        if cfg.attack != "none":
            summary["attack"] = summarize_attack(read_rounds(out) if out else lines)
        if out:
            if state.best_w is not None:
                _save_array(os.path.join(out, BEST_MODEL), state.best_w.cpu().numpy())
                summary["best_model"] = BEST_MODEL
            _write_json(os.path.join(out, "summary.json"), summary)
        if self.progress:
            sys.stderr.write("\n")
        return summary

    def describe(self) -> Dict[str, Any]:
        """config.json: every setting plus what they resolve to."""
        ds = self.dataset
        return {
            "config": dataclasses.asdict(self.config),
            "fedrobust_version": fedrobust.__version__,
            "rule_params": self.config.rule_params(),
            "learning_rate": self.config.learning_rate(),
            "attack": None if self.config.attack == "none" else {
                "name": self.config.attack, "knowledge": self.config.knowledge,
                "assumed_rule": self.config.assumed_rule(),
                "assumed_rule_params": self.config.rule_params(self.config.assumed_rule()),
                "options": dataclasses.asdict(self.config.attack_options())},
            "dataset": {"name": ds.name, "train": len(ds.y_train), "test": len(ds.y_test),
                        "classes": ds.num_classes, "input_shape": list(ds.input_shape), "notes": ds.notes},
            "model": {"name": self.config.model, "parameters": self.model.d},
            "workers_without_data": int((self.local_sizes == 0).sum()),
            "compromised_workers": list(range(self.config.compromised)),
            "backend": fedrobust.backend_info()["cpu"],
        }

    def _report(self, state: _State, error: float, start_round: int, start_seconds: float) -> None:
        if not self.progress:
            return
        done = state.round - start_round
        rate = done / (state.seconds - start_seconds) if state.seconds > start_seconds else 0.0
        width = 30
        filled = int(width * state.round / self.config.rounds)
        bar = "#" * filled + "-" * (width - filled)
        end = "\r" if sys.stderr.isatty() else "\n"
        sys.stderr.write(f"[{bar}] round {state.round}/{self.config.rounds}  test error {error:.4f}  "
                         f"{rate:.1f} rounds/s{end}")
        sys.stderr.flush()


def run(config: Config, progress: bool = True) -> Dict[str, Any]:
    """Build the simulation for `config` and run it (see Simulation.run)."""
    return Simulation(config, progress=progress).run()


# ---------------------------------------------------------------------------
# Results on disk
# ---------------------------------------------------------------------------
def _write_json(path: str, value: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _save_array(path: str, array: np.ndarray) -> None:
    tmp = path + ".tmp.npy"
    np.save(tmp, array)
    os.replace(tmp, path)


def read_rounds(out: str) -> List[Dict[str, Any]]:
    """The lines of out/rounds.jsonl."""
    with open(os.path.join(out, "rounds.jsonl")) as f:
        return [json.loads(ln) for ln in f if ln.strip()]


def summarize_attack(lines: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Over the attacked rounds listed in the lines' "attack" entries: how many there were and
    the mean of every numeric or boolean metric (e.g. found_mean = the fraction of rounds in
    which the Krum attack found a lambda)."""
    rounds = [r for line in lines for r in line.get("attack", ()) if r.get("attacked")]
    summary: Dict[str, Any] = {"rounds_attacked": len(rounds)}
    keys = sorted({k for r in rounds for k, v in r.items()
                   if k not in ("round", "attacked") and isinstance(v, (bool, int, float))})
    for key in keys:
        values = [float(r[key]) for r in rounds if isinstance(r.get(key), (bool, int, float))]
        summary[f"{key}_mean"] = float(np.mean(values))
    return summary


def _truncate_rounds(path: str, last_round: int) -> None:
    """Keep the lines of rounds.jsonl up to the checkpoint: later rounds are run again."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [ln for ln in f if ln.strip() and json.loads(ln)["round"] <= last_round]
    with open(path + ".tmp", "w") as f:
        f.writelines(lines)
    os.replace(path + ".tmp", path)


def save_checkpoint(out: str, state: _State) -> None:
    """Write checkpoint.npz atomically: a crash while writing leaves the previous one intact."""
    path = os.path.join(out, CHECKPOINT)
    tmp = path + ".tmp.npz"
    np.savez(tmp, w=state.w.cpu().numpy(), round=np.int64(state.round),
             rng=np.array(json.dumps(state.rng.bit_generator.state)),
             best_error=np.float64(state.best_error), best_round=np.int64(state.best_round),
             best_w=state.best_w.cpu().numpy() if state.best_w is not None else np.zeros(0, np.float32),
             seconds=np.float64(state.seconds), pending=np.array(json.dumps(state.pending)))
    os.replace(tmp, path)


def load_checkpoint(out: str, config: Config) -> Optional[_State]:
    """The state saved in `out`, or None. Refuses a checkpoint of a different configuration."""
    path = os.path.join(out, CHECKPOINT)
    if not os.path.exists(path):
        return None
    with open(os.path.join(out, "config.json")) as f:
        saved = json.load(f)["config"]
    mine = dataclasses.asdict(config)
    differing = sorted(k for k in mine if k not in ("out", "rounds") and saved.get(k) != mine[k])
    if differing:
        raise ValueError(f"{out} holds a run with different settings {differing}; "
                         "use another --out directory or the same settings to resume")
    with np.load(path, allow_pickle=False) as z:
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(z["rng"]))
        device = torch.device(config.device)
        return _State(w=torch.from_numpy(z["w"].copy()).to(device), round=int(z["round"]), rng=rng,
                      best_error=float(z["best_error"]), best_round=int(z["best_round"]),
                      best_w=torch.from_numpy(z["best_w"].copy()).to(device) if z["best_w"].size else None,
                      seconds=float(z["seconds"]),
                      pending=json.loads(str(z["pending"])) if "pending" in z.files else [])
