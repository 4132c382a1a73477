"""The settings of a run (`Config`) and their validation: every value is checked before
anything is loaded, and a bad one ends in one ValueError naming the setting. The rules'
requirements are the registry's (aggregators.RULES, the native modules' own checks).
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Dict, Optional

from fedrobust import aggregators, attacks, data, defenses
from fedrobust.attacks import ATTACKS, AttackOptions


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
    direction: str = "sum"  # full knowledge: sign of the sum of all m updates, "rule" (the rule's output) or "mean"
    on_failure: str = "last"  # Krum attack without a lambda: send the "last" crafted model or "benign"
    trim_reference: str = "model"  # trim attack b-interval on "model" values (paper) or "update" values
    trim_b: float = 2.0  # trim attack, full knowledge: the interval factor b
    workers: int = 100
    compromised: int = 20
    sample: Optional[int] = None  # workers selected per round; None = all
    local_rounds: int = 1
    q: float = 0.5
    train_examples: Optional[int] = None  # a uniform sample of this many training examples (Table 5: 6000); None = all
    rounds: int = 200
    lr: Optional[float] = None  # None: the preset of DEFAULT_LR for the dataset
    batch_size: int = 32
    eval_every: int = 10
    seed: int = 0
    data_dir: Optional[str] = None
    out: Optional[str] = None
    device: str = "cpu"
    checkpoint_every: int = 50
    defense: str = "none"  # none, err, lfr, union (fedrobust.defenses; SPEC 9.5)

    def validate(self) -> None:
        """Raise ValueError naming the setting for any value a run cannot use."""
        self._check_types()
        _check_simd_environment()
        _check(self.workers >= 1, "workers", "must be >= 1", self.workers)
        _check(self.seed >= 0, "seed", "must be >= 0", self.seed)
        _check(0 <= self.compromised, "compromised", "must be >= 0", self.compromised)
        _check(2 * self.compromised < self.workers, "compromised",
               f"must be < workers / 2 = {self.workers / 2:g} (the rules need an honest majority)",
               self.compromised)
        m = self.selected_per_round()
        _check(1 <= m <= self.workers, "sample", f"must be in [1, workers = {self.workers}]", self.sample)
        _check(0.0 <= self.q <= 1.0, "q", "(degree of non-IID) must be in [0, 1]", self.q)
        _check(self.train_examples is None or self.train_examples >= 1, "train_examples",
               "must be >= 1 (or left out for every training example)", self.train_examples)
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
        from fedrobust import models  # torch: the settings can be read (fedrobust reproduce --list) without it

        _check(self.model in models.MODELS, "model", f"must be one of {sorted(models.MODELS)}", self.model)
        _check(self.rule in aggregators.available(), "rule",
               f"must be one of {aggregators.available()}", self.rule)
        self._check_rule_fits(self.rule, "rule", m)
        self._validate_attack(m)
        _check(self.defense in defenses.DEFENSES, "defense", f"must be one of {list(defenses.DEFENSES)}", self.defense)
        _check(self.defense == "none" or self.compromised < m, "compromised",
               f"must be below the {m} workers per round for defense {self.defense!r} (it removes c of them)",
               self.compromised)

    def _validate_cuda(self) -> None:
        """What the all-GPU path covers: a visible device, every rule and every attack (Krum,
        Bulyan and the Krum attack within the sizes of their CUDA kernels; labelflip poisons the
        data)."""
        import torch

        from fedrobust._native import cuda

        _check(cuda is not None and cuda.device_count() > 0 and torch.cuda.is_available(), "device",
               "'cuda' needs a visible CUDA device, fedrobust's CUDA module and a CUDA build of torch "
               "(see `fedrobust info`)", self.device)
        m = self.selected_per_round()
        distances = aggregators.rule(self.rule).selects_rows or self.attack == "krum"
        _check(not distances or m <= cuda.max_distance_rows, "workers",
               f"(per round) must be at most {cuda.max_distance_rows} for Krum, Bulyan and the Krum attack on CUDA",
               m)
        _check(self.rule != "bulyan" or m - 2 * self.compromised <= cuda.sort_rows, "workers",
               f"(per round) minus 2 * compromised must be at most {cuda.sort_rows} for Bulyan on CUDA", m)

    def _check_types(self) -> None:
        """Each value of its field's type (from a TOML file or config.json nothing else checks
        it): an integer field takes only integers, a float field integers too, never a bool."""
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), str(field.type)
            if value is None and kind.startswith("Optional"):
                continue
            if "int" in kind:
                ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
            elif "float" in kind:
                ok, what = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
            else:
                ok, what = isinstance(value, str), "a string"
            if not ok:
                optional = " (or left out)" if kind.startswith("Optional") else ""
                raise ValueError(f"setting {field.name!r} must be {what}{optional}; got {value!r} "
                                 f"({type(value).__name__})")

    def _check_rule_fits(self, rule: str, setting: str, m: int) -> None:
        """The rule's parameters (c, beta) must be valid for m workers per round: the rule's own
        check (aggregators.RULES, the native modules' message)."""
        params = self.rule_params(rule)
        try:
            aggregators.rule(rule).check_fits(m, **params)
        except ValueError as e:
            culprit = "beta" if "beta" in params else "compromised"
            value = params.get("beta", self.compromised)
            raise ValueError(f"setting {culprit!r} does not fit {setting} {rule!r} with {m} workers per round: "
                             f"{e}; got {value!r}") from None

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
        _check(not ATTACKS[self.attack].poisons_labels or self.attack_fraction == 1.0, "attack_fraction",
               f"must be 1 for {self.attack} (the compromised workers' data is poisoned in every round)",
               self.attack_fraction)
        if not ATTACKS[self.attack].crafted:
            return
        _check(self.goal == "directed" or self.knowledge == "full" or self.attack == "krum", "goal",
               "'deviation' with the trim attack needs knowledge 'full' (it uses the benign extremes)", self.goal)
        self._check_rule_fits(self.assumed_rule(), "attack_rule", m)
        if self.attack == "krum" and self.knowledge == "full":
            self._check_rule_fits("krum", "the Krum attack's simulated Krum", m)
        if self.attack == "krum" and self.knowledge == "partial":
            _check(c >= 2, "compromised",
                   "must be >= 2 for the partial-knowledge Krum attack (it needs c - 1 >= 1 supporters)", c)

    def learning_rate(self, dataset: Optional[str] = None) -> float:
        """lr, else the preset of `dataset` (default: the dataset the settings name)."""
        return DEFAULT_LR.get(dataset or self.dataset, 0.1) if self.lr is None else self.lr

    def selected_per_round(self) -> int:
        return self.workers if self.sample is None else self.sample

    def trim_beta(self) -> int:
        return self.compromised if self.beta is None else self.beta

    def rule_params(self, rule: Optional[str] = None) -> Dict[str, Any]:
        """The parameters of `rule` (default: the server's) from the settings: the server knows
        c (SPEC 3), beta defaults to c, krum_distance sets `squared`; others keep their defaults."""
        settings = {"c": self.compromised, "beta": self.trim_beta(), "squared": self.krum_distance == "squared"}
        entry = aggregators.rule(rule or self.rule)
        return {p.name: settings[p.name] for p in entry.params if p.name in settings}

    def assumed_rule(self) -> str:
        """The rule the attacker crafts against: attack_rule, else Krum for the Krum attack and
        the server's rule (known, SPEC 3) for the others."""
        if self.attack_rule:
            return self.attack_rule
        return ATTACKS[self.attack].assumed_rule or self.rule

    def attack_options(self) -> AttackOptions:
        return AttackOptions(epsilon=self.epsilon, goal=self.goal, direction=self.direction,
                             on_failure=self.on_failure, trim_reference=self.trim_reference, b=self.trim_b,
                             krum_squared=self.krum_distance == "squared")

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> Config:
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


def read_toml(path: str) -> Dict[str, Any]:
    """The table of a TOML file; ValueError naming the file when it is missing or not TOML."""
    try:
        import tomllib
    except ImportError:  # Python < 3.11: the same parser, installed with fedrobust there
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from None


def _check_simd_environment() -> None:
    """FEDROBUST_SIMD, when set, names a SIMD level this machine has (the kernels read it at
    their first call, deep inside a run)."""
    from fedrobust._native import cpu

    try:
        cpu.simd_level()
    except ValueError as e:
        raise ValueError(f"environment variable FEDROBUST_SIMD={os.environ.get('FEDROBUST_SIMD', '')!r}: {e}") from None


def _check(ok: bool, name: str, requirement: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"setting {name!r} {requirement}; got {value!r}")
