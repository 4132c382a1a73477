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
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Protocol

import numpy as np
import torch

import fedrobust
from fedrobust import aggregators, attacks, data, defenses, models
from fedrobust._native import cpu
from fedrobust.attacks import ATTACKS, Attack, AttackContext
from fedrobust.config import Config
from fedrobust.distributed import OnRay, RayTraining
from fedrobust.results import (
    CHECKPOINT,
    RunDirectory,
    RunDirectoryError,
    settings_fingerprint,
    summarize_attack,
    summarize_defense,
)

VALIDATION_SIZE = 100  # examples of the test split a defense validates on (SPEC 13 item 11)


# ---------------------------------------------------------------------------
# Hooks: attacks (fedrobust.attacks) rewrite the compromised rows, defenses choose the rows kept.
# ---------------------------------------------------------------------------
class Defense(Protocol):
    def __call__(self, updates: torch.Tensor, evaluate: Callable[[Any], tuple]) -> Any:
        """Return the indices of the rows kept. updates: the round's (m, d) torch tensor on the
        run's device (every fedrobust function takes it as it is). evaluate(update) -> (error,
        loss) of the global model moved by `update` (d,), on the validation set: 100 test
        examples, which are then left out of the reported test error."""


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
    pending_defense: List[Dict[str, Any]] = dataclasses.field(default_factory=list)  # defense metrics, likewise


class Simulation:
    """A configured run: data, partition, model, rule. `run()` trains and writes results."""

    def __init__(self, config: Config, attack: Optional[Attack] = None,
                 defense: Optional[Defense] = None, progress: bool = True,
                 dataset: Optional[data.Dataset] = None, overwrite: bool = False,
                 on_ray: Optional[OnRay] = None):
        """`dataset` replaces the one config.dataset names (a user's own data). `overwrite`:
        replace a run with other settings in config.out (never done without it). `on_ray`:
        train the workers on Ray actors (fedrobust.distributed; the same results)."""
        if on_ray is not None and config.device != "cpu":
            raise ValueError(f"a run on Ray trains on the actors' CPUs; got device {config.device!r}: use device "
                             "'cpu' (the driver's GPU would not be used)")
        config.validate()
        self.on_ray = on_ray
        self.training: Optional[RayTraining] = None  # the actors, while run() runs
        if config.device == "cuda" and (defense is not None or attack is not None):
            raise ValueError("device 'cuda' runs without a custom defense or attack in this build "
                             "(their hooks have not run on a GPU yet); use device 'cpu'")
        self.config = config
        self.progress = progress
        self.overwrite = overwrite
        self.attack = attack or ATTACKS[config.attack]
        self.defending = config.defense != "none"
        self.custom_attack = attack is not None  # always runs, on copies, its rows checked
        self.attacking = self.custom_attack or config.attack != "none"
        self.defense = defense
        self.directory = RunDirectory(config.out) if config.out else None
        if self.directory:  # before any data is loaded: a directory this run cannot use fails now
            self._check_directory()
        # partition, init, training, validation, attack draws
        seeds = np.random.SeedSequence(config.seed).spawn(6)  # spawn(6)[:5] == spawn(5): old runs keep theirs
        ds = dataset or data.load(config.dataset, data_dir=config.data_dir, seed=config.seed)
        if config.train_examples is not None:
            ds = data.training_subset(ds, config.train_examples, np.random.default_rng(seeds[5]))
        self.dataset = ds
        if config.workers < ds.num_classes:
            raise ValueError(f"setting 'workers' must be >= the number of classes of {ds.name} ({ds.num_classes}): "
                             f"the non-IID partition gives every class group a worker; got {config.workers}")
        self.custom_dataset = dataset is not None
        self.learning_rate = config.learning_rate(ds.name)  # a user's dataset: its own name's preset
        self.parts = data.partition(ds.y_train, config.workers, ds.num_classes, config.q,
                                    np.random.default_rng(seeds[0]))
        self.model = models.get(config.model, ds.input_shape, ds.num_classes)
        self.device = torch.device(config.device)
        self.x_train = torch.from_numpy(ds.x_train).to(self.device)
        self.y_train = torch.from_numpy(self._training_labels()).to(self.device)
        test = np.arange(len(ds.y_test))
        if defense is not None or self.defending:  # SPEC 13 item 11: 100 test examples become the validation set
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
        if not ATTACKS[self.config.attack].poisons_labels:
            return y
        y = y.copy()
        for worker in range(self.config.compromised):
            y[self.parts[worker]] = attacks.flip_labels(y[self.parts[worker]], self.dataset.num_classes)
        return y

    def attacked(self, round_index: int) -> bool:
        """Whether round `round_index` is attacked: always with attack_fraction 1, else a draw
        keyed by (seed, round) so that the attacked rounds do not depend on anything else."""
        cfg = self.config
        if not self.attacking or cfg.attack_fraction <= 0:
            return False
        if cfg.attack_fraction >= 1:
            return True
        return bool(np.random.default_rng([self._attack_seed, round_index]).random() < cfg.attack_fraction)

    # -- one round ---------------------------------------------------------
    def sample_indices(self, workers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Minibatch example indices for the given workers: (m, B) int64, -1 = empty slot.

        Each worker draws min(batch_size, local size) of its examples without
        replacement (SPEC 13 item 10): one uniform key per slot of its local set
        (rng.random over the (m, largest local set) table), and its examples with
        the smallest keys (ties by slot), in local-set order, then -1 up to B.
        B = min(batch_size, the largest local set of any worker).
        """
        table = self.local_index[workers]
        B = min(self.config.batch_size, table.shape[1])
        return cpu.minibatch_indices(table, rng.random(table.shape), B)

    def sample_batches(self, workers: np.ndarray, rng: np.random.Generator):
        """The examples of sample_indices: x (m, B, ...), y (m, B), weight (m, B) (0 = empty slot)."""
        chosen = self.sample_indices(workers, rng)
        valid = chosen >= 0
        idx = torch.from_numpy(np.where(valid, chosen, 0).ravel()).to(self.device)
        x = torch.index_select(self.x_train, 0, idx).view(*chosen.shape, *self.x_train.shape[1:])
        y = torch.index_select(self.y_train, 0, idx).view(chosen.shape)
        return x, y, torch.from_numpy(valid.astype(np.float32)).to(self.device)

    def local_updates(self, w: torch.Tensor, workers: np.ndarray, rng: np.random.Generator,
                      nonfinite: Optional[np.ndarray] = None) -> torch.Tensor:
        """(m, d) updates: local SGD from w for every selected worker at once
        (model.sgd_step accumulates U_i -= lr * grad_i, starting from U = 0). With
        `nonfinite` ((m,) bool), also sets whether each row holds a NaN or an Inf (the LR
        kernel flags its rows as it writes them)."""
        lr = self.learning_rate
        if self.training is not None:  # the same draws, the training on the actors
            batches = [self.sample_indices(workers, rng) for _ in range(self.config.local_rounds)]
            U = self.training.updates(w, workers, batches, lr)
            if nonfinite is not None:
                nonfinite[:] = aggregators.nonfinite_rows(U)
            return U
        U = None
        for k in range(self.config.local_rounds):
            last = k == self.config.local_rounds - 1
            U = self.model.sgd_step(w, U, self.x_train, self.y_train, self.sample_indices(workers, rng), lr,
                                    nonfinite if last else None)
        return U

    def step(self, state: _State) -> Dict[str, Any]:
        """Run one round in place on `state`; return the round's metrics."""
        cfg = self.config
        rng = state.rng
        m = cfg.selected_per_round()
        workers = np.arange(cfg.workers) if m == cfg.workers else np.sort(
            rng.choice(cfg.workers, size=m, replace=False))
        nonfinite = np.zeros(m, dtype=bool)  # whether each row of U holds a NaN or an Inf
        U = self.local_updates(state.w, workers, rng, nonfinite)  # (m, d) torch, on the run's device
        compromised = np.flatnonzero(workers < cfg.compromised)
        metrics: Dict[str, Any] = {"empty_workers": int((self.local_sizes[workers] == 0).sum())}
        round_metrics: Dict[str, Any] = {"round": state.round + 1}
        if compromised.size and self.attacked(state.round):
            round_metrics["attacked"] = True
            if self.custom_attack or not ATTACKS[cfg.attack].poisons_labels:  # else the data is poisoned
                rule = cfg.assumed_rule()
                # A custom attack sees copies: it may change nothing but the rows it returns.
                seen_U, seen_w = (U.clone(), state.w.clone()) if self.custom_attack else (U, state.w)
                ctx = AttackContext(seen_U, compromised, seen_w, rule, cfg.rule_params(rule), cfg.knowledge, rng,
                                    state.round, seed=self._attack_seed, worker_ids=workers, lr=self.learning_rate,
                                    options=cfg.attack_options())
                crafted = self._attack_rows(self.attack(ctx), compromised.size, U)
                U[self._rows(compromised)] = crafted
                nonfinite[compromised] = aggregators.nonfinite_rows(crafted)
                round_metrics.update(ctx.metrics)
        else:
            round_metrics["attacked"] = False
        rows = np.arange(m)  # the rows of U that reach the rule
        if self.defending:
            result = defenses.defend(cfg.defense, U, state.w, cfg.rule, cfg.rule_params(), cfg.compromised,
                                     lambda models: self.model.evaluate_many(models, self.x_val, self.y_val))
            hit = int(np.isin(result.removed, compromised).sum())
            state.pending_defense.append({"round": state.round + 1, "removed": workers[result.removed].tolist(),
                                          "removed_compromised": hit, "removed_benign": int(result.removed.size) - hit,
                                          "compromised": int(compromised.size),
                                          "decided_by_index": result.by_index})
            rows = result.kept
        if self.defense is not None:
            kept = self.defense(U[self._rows(rows)], lambda u: self.model.evaluate(
                state.w + torch.as_tensor(u, device=self.device), self.x_val, self.y_val))
            rows = rows[np.asarray(kept, dtype=np.int64)]
        if rows.size < m:
            U = U[self._rows(rows)]
        if nonfinite[rows].any():
            metrics["nonfinite_workers"] = rows[nonfinite[rows]].tolist()
        state.w = state.w + self._aggregate(U, rows, compromised, round_metrics)
        if self.attacking:
            state.pending.append(round_metrics)
        state.round += 1
        return metrics

    def _rows(self, rows: Any) -> torch.Tensor:
        """Row indices as an int64 tensor on the run's device."""
        return torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)

    def _attack_rows(self, rows: Any, c: int, U: torch.Tensor) -> torch.Tensor:
        """The attack's (c, d) rows as U's dtype and device; AttackOutputError for anything else
        (None, a scalar or a single row are never broadcast)."""
        name = _name_of(self.attack)
        shape = tuple(getattr(rows, "shape", ()))
        try:
            t = torch.as_tensor(rows) if rows is not None else None
        except (TypeError, ValueError, RuntimeError):
            t = None
        if t is None or tuple(t.shape) != (c, U.shape[1]) or not (t.is_floating_point()):
            got = "None" if rows is None else f"{type(rows).__name__} of shape {shape}" + (
                f" and dtype {t.dtype}" if t is not None else "")
            raise AttackOutputError(f"attack {name!r} returned {got}; expected a ({c}, {U.shape[1]}) float array: "
                                    "one row per compromised worker")
        return t.to(dtype=U.dtype, device=U.device)

    def _aggregate(self, U: torch.Tensor, rows: np.ndarray, compromised: np.ndarray,
                   round_metrics: Dict[str, Any]) -> torch.Tensor:
        """The rule's output on U (the round's rows `rows`, all or those a defense kept), its
        parameters clamped for U's row count (SPEC 13 item 11); for the rules that select
        rows (Krum, Bulyan) also how many of the selected rows were compromised, into
        round_metrics."""
        cfg = self.config
        rule = aggregators.rule(cfg.rule)
        params = rule.clamped(U.shape[0], **cfg.rule_params())
        if rule.selects_rows:
            aggregate, chosen = rule.select(U, **params)
            round_metrics[f"{rule.name}_selected_compromised"] = int(np.isin(rows[chosen], compromised).sum())
            return aggregate
        return rule.bind(**params)(U)

    def rule(self, U: Any) -> Any:
        """The server's rule with the settings' parameters, on all of U (no defense)."""
        return aggregators.get(self.config.rule, **self.config.rule_params())(U)

    # -- the whole run -----------------------------------------------------
    def initial_state(self) -> _State:
        w = self.model.init(np.random.default_rng(self._init_seed)).to(self.device)
        return _State(w=w, round=0, rng=np.random.default_rng(self._train_seed))

    def evaluate(self, w: torch.Tensor):
        return self.model.evaluate(w, self.x_test, self.y_test)

    def _check_directory(self) -> None:
        """RunDirectoryError unless config.out can take this run: creatable and writable, not
        held by another run, empty or holding this run's settings (or overwrite), and not
        further on than config.rounds."""
        out, cfg = self.directory, self.config
        out.create()
        out.check_free()
        if out.check_can_hold(dataclasses.asdict(cfg), self.overwrite):
            z = out.load_checkpoint()
            done = _checked_round(z, out.file(CHECKPOINT)) if z is not None else 0
            if done > cfg.rounds:
                raise RunDirectoryError(f"{out.path} has {done} rounds done, more than rounds = {cfg.rounds}; "
                                        f"pass rounds >= {done} to extend it, or choose another --out")

    def run(self) -> Dict[str, Any]:
        """Train for config.rounds rounds (continuing from a checkpoint of the same settings in
        config.out if there is one), write the results and return the summary. config.out is
        held exclusively for the whole run. RunDirectoryError for a directory the run cannot
        use; DivergedError when the global model stops being finite."""
        out = self.directory
        if self.on_ray is not None:
            self._start_actors()
        try:
            if out is None:
                return self._run(None)
            with out:
                return self._run(out)
        finally:
            if self.training is not None:
                self.training.close()
                self.training = None

    def _start_actors(self) -> None:
        ds, r = self.dataset, self.on_ray
        self.training = RayTraining(r.address, r.actors, r.threads, self.config.model, ds.input_shape,
                                    ds.num_classes, self.parts, ds.x_train, self.y_train.numpy())

    def _resume_or_start(self, out: RunDirectory) -> Optional[_State]:
        """The state to continue from in `out` (its files trimmed to it), or None after
        starting the directory afresh."""
        cfg = self.config
        state = None
        if out.check_can_hold(dataclasses.asdict(cfg), self.overwrite):
            state = load_checkpoint(out.path, cfg, self.model.d)
        if state is None:
            out.remove_run()
            out.write_config(self.describe())
            out.start_rounds()
            return None
        if state.round > cfg.rounds:
            raise RunDirectoryError(f"{out.path} has {state.round} rounds done, more than rounds = {cfg.rounds}")
        # A last round evaluated off the schedule only because it was the last is not part of a longer run.
        extended = cfg.rounds > state.round and state.round % cfg.eval_every != 0
        note = out.keep_rounds_up_to(state.round - 1 if extended else state.round)
        if note:
            sys.stderr.write(note + "\n")
        out.write_config(self.describe())  # the round count may have changed
        return state

    def _run(self, out: Optional[RunDirectory]) -> Dict[str, Any]:
        cfg = self.config
        state = self._resume_or_start(out) if out else None
        if state is None:
            state = self.initial_state()
        error, loss = math.nan, math.nan
        final_only = None  # (error, round, w) of a last round evaluated only because it is the last
        lines: List[Dict[str, Any]] = []  # the lines of rounds.jsonl written by this call
        start_round, start_seconds = state.round, state.seconds
        while state.round < cfg.rounds:
            t0 = time.perf_counter()
            metrics = self.step(state)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)  # the round's kernels count in its time
            state.seconds += time.perf_counter() - t0
            if not bool(torch.isfinite(state.w).all()):
                raise DivergedError(f"round {state.round}: the global model is no longer finite (NaN or Inf); "
                                    f"a smaller learning rate (lr = {self.learning_rate:g} now) may help"
                                    + (f"; the results up to the last checkpoint stay in {out.path}" if out else ""))
            scheduled = state.round % cfg.eval_every == 0
            if scheduled or state.round == cfg.rounds:
                error, loss = self.evaluate(state.w)
                line = {"round": state.round, "test_error": error, "test_loss": loss,
                        "seconds": round(state.seconds, 6), **metrics}
                if self.attacking:
                    line["attack"] = list(state.pending)
                if self.defending:
                    line["defense"] = list(state.pending_defense)
                if scheduled:  # the state a longer run continues from
                    state.pending, state.pending_defense = [], []
                    if error < state.best_error:
                        state.best_error, state.best_round, state.best_w = error, state.round, state.w.clone()
                else:
                    final_only = (error, state.round, state.w.clone())
                lines.append(line)
                if out:
                    out.append_round(line)
                self._report(state, error, start_round, start_seconds)
            if out and (state.round % cfg.checkpoint_every == 0 or state.round == cfg.rounds):
                save_checkpoint(out.path, state, cfg)
        if math.isnan(error):  # resumed at the end: evaluate the final model once more
            error, loss = self.evaluate(state.w)
            if state.round % cfg.eval_every != 0:
                final_only = (error, state.round, state.w.clone())
        best_error, best_round, best_w = state.best_error, state.best_round, state.best_w
        if final_only is not None and final_only[0] < best_error:
            best_error, best_round, best_w = final_only
        summary = {
            "final_test_error": error,
            "final_test_loss": loss,
            "best_test_error": best_error,
            "best_round": best_round,
            "rounds": state.round,
            "rounds_per_second": state.round / state.seconds if state.seconds > 0 else None,
            "train_seconds": state.seconds,
        }
        if self.attacking:
            summary["attack"] = summarize_attack(out.read_rounds() if out else lines)
        if self.defending:
            summary["defense"] = summarize_defense(out.read_rounds() if out else lines)
        if out:
            if best_w is not None:
                summary["best_model"] = out.save_best_model(best_w.cpu().numpy())
            out.write_summary(summary)
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
            "learning_rate": self.learning_rate,
            "attack": None if not self.attacking else {
                "name": _name_of(self.attack) if self.custom_attack else self.config.attack,
                "custom": self.custom_attack, "knowledge": self.config.knowledge,
                "assumed_rule": self.config.assumed_rule(),
                "assumed_rule_params": self.config.rule_params(self.config.assumed_rule()),
                "options": dataclasses.asdict(self.config.attack_options())},
            "dataset": {"name": ds.name, "custom": self.custom_dataset, "train": len(ds.y_train),
                        "test": len(ds.y_test), "classes": ds.num_classes, "input_shape": list(ds.input_shape),
                        "notes": ds.notes},
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


def _name_of(attack: Any) -> str:
    """A hook's name for messages and config.json."""
    return getattr(attack, "name", None) or getattr(attack, "__name__", None) or type(attack).__name__


class AttackOutputError(ValueError):
    """An attack hook returned something other than its (c, d) rows."""


class DivergedError(RuntimeError):
    """The global model stopped being finite (the message names the round)."""


# ---------------------------------------------------------------------------
# The loop's state in a checkpoint (fedrobust.results writes and reads the file)
# ---------------------------------------------------------------------------
CHECKPOINT_FIELDS = ("w", "round", "rng", "best_error", "best_round", "best_w", "seconds", "pending",
                     "pending_defense", "settings")


def save_checkpoint(out: str, state: _State, config: Config) -> None:
    """Write the state to out/checkpoint.npz atomically, with the fingerprint of the settings."""
    RunDirectory(out).save_checkpoint(dict(
        w=state.w.cpu().numpy(), round=np.int64(state.round), rng=np.array(json.dumps(state.rng.bit_generator.state)),
        best_error=np.float64(state.best_error), best_round=np.int64(state.best_round),
        best_w=state.best_w.cpu().numpy() if state.best_w is not None else np.zeros(0, np.float32),
        seconds=np.float64(state.seconds), pending=np.array(json.dumps(state.pending)),
        pending_defense=np.array(json.dumps(state.pending_defense)),
        settings=np.array(settings_fingerprint(dataclasses.asdict(config)))))


def load_checkpoint(out: str, config: Config, d: Optional[int] = None) -> Optional[_State]:
    """The state saved in `out`, or None when there is none. Every field is checked (`d`: the
    model's parameter count); RunDirectoryError naming the file and the problem for a
    damaged checkpoint or one of other settings."""
    directory = RunDirectory(out)
    z = directory.load_checkpoint()
    if z is None:
        return None
    path = directory.file(CHECKPOINT)

    def bad(problem: str) -> RunDirectoryError:
        return RunDirectoryError(f"{path}: {problem}; remove it to start the run again")

    missing = [k for k in CHECKPOINT_FIELDS if k not in z]
    if missing:
        raise bad(f"missing {missing}")
    if str(z["settings"]) != settings_fingerprint(dataclasses.asdict(config)):
        raise bad("it belongs to other settings than config.json's (was config.json edited?)")
    done = _checked_round(z, path)
    w = z["w"]
    if w.dtype != np.float32 or w.ndim != 1 or (d is not None and w.shape[0] != d):
        raise bad(f"'w' must be a float32 vector of {d} parameters, got {w.dtype} of shape {w.shape}")
    if not np.isfinite(w).all():
        raise bad("'w' holds NaN or Inf")
    best_w = z["best_w"]
    if best_w.size and (best_w.dtype != np.float32 or best_w.shape != w.shape):
        raise bad(f"'best_w' must be empty or like 'w' {w.shape}, got {best_w.dtype} of shape {best_w.shape}")
    best_error, best_round, seconds = (_scalar(z, k, path) for k in ("best_error", "best_round", "seconds"))
    if math.isnan(best_error) or not (best_error >= 0):
        raise bad(f"'best_error' must be a number >= 0 (or Inf), got {best_error}")
    if not (_is_integer(best_round) and 0 <= best_round <= done):
        raise bad(f"'best_round' must be an integer in [0, round = {done}], got {best_round}")
    if not (math.isfinite(seconds) and seconds >= 0):
        raise bad(f"'seconds' must be a finite number >= 0, got {seconds}")
    try:
        rng = np.random.default_rng()
        rng.bit_generator.state = json.loads(str(z["rng"]))
        pending = json.loads(str(z["pending"]))
        pending_defense = json.loads(str(z["pending_defense"]))
    except (ValueError, TypeError, KeyError) as e:
        raise bad(f"'rng', 'pending' or 'pending_defense' is not a saved generator state / list ({e})") from None
    if not isinstance(pending, list) or not isinstance(pending_defense, list):
        raise bad("'pending' and 'pending_defense' must be JSON lists")
    device = torch.device(config.device)
    best = torch.from_numpy(best_w.copy()).to(device) if best_w.size else None
    return _State(w=torch.from_numpy(w.copy()).to(device), round=done, rng=rng, best_error=float(best_error),
                  best_round=int(best_round), best_w=best, seconds=float(seconds), pending=pending,
                  pending_defense=pending_defense)


def _scalar(z: Dict[str, np.ndarray], key: str, path: str) -> float:
    a = z[key]
    if a.ndim != 0 or a.dtype.kind not in "iuf":
        raise RunDirectoryError(f"{path}: '{key}' must be a number, got {a.dtype} of shape {a.shape}")
    return a.item()


def _is_integer(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _checked_round(z: Dict[str, np.ndarray], path: str) -> int:
    """The checkpoint's `round`: an integer >= 0 (RunDirectoryError otherwise)."""
    if "round" not in z:
        raise RunDirectoryError(f"{path}: missing 'round'")
    a = z["round"]
    if a.ndim != 0 or a.dtype.kind not in "iu" or int(a) < 0:
        raise RunDirectoryError(f"{path}: 'round' must be an integer >= 0, got {a.dtype} {a.tolist()!r}")
    return int(a)
