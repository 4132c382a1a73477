"""The results directory of one run: the only code that reads or writes its files.

    config.json      every setting and what it resolved to (written when the run starts)
    rounds.jsonl     one JSON line per evaluated round, appended as it happens
    checkpoint.npz   the loop's state every `checkpoint_every` rounds (atomic; no pickles)
    summary.json     final and best test error, rounds, speed, attack means (at the end)
    best_model.npy   the global model of the lowest test error (the paper's Table 3 strategy)

Whole-file writes go to a temporary file first and are then
renamed over the old one, so a crash leaves the previous version intact.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import numpy as np

CONFIG = "config.json"
ROUNDS = "rounds.jsonl"
CHECKPOINT = "checkpoint.npz"
SUMMARY = "summary.json"
BEST_MODEL = "best_model.npy"


class RunDirectory:
    """The files of one run in `path` (see the module docstring)."""

    def __init__(self, path: str):
        self.path = str(path)

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def create(self) -> None:
        os.makedirs(self.path, exist_ok=True)

    # -- config.json --------------------------------------------------------
    def write_config(self, description: Dict[str, Any]) -> None:
        write_json(self.file(CONFIG), description)

    def read_config(self) -> Dict[str, Any]:
        """config.json; ValueError when the directory holds none."""
        path = self.file(CONFIG)
        if not os.path.exists(path):
            raise ValueError(f"{self.path}: no {CONFIG} there (not a results directory)")
        with open(path) as f:
            return json.load(f)

    def settings_differing_from(self, settings: Dict[str, Any], ignore: tuple = ()) -> List[str]:
        """The names of the settings whose value in config.json differs from `settings`."""
        saved = self.read_config()["config"]
        return sorted(k for k in settings if k not in ignore and saved.get(k) != settings[k])

    # -- rounds.jsonl -------------------------------------------------------
    def start_rounds(self) -> None:
        """An empty rounds.jsonl (a new run)."""
        open(self.file(ROUNDS), "w").close()

    def append_round(self, line: Dict[str, Any]) -> None:
        with open(self.file(ROUNDS), "a") as f:
            f.write(json.dumps(line) + "\n")

    def read_rounds(self) -> List[Dict[str, Any]]:
        """The lines of rounds.jsonl as dicts; FileNotFoundError naming the directory when absent."""
        path = self.file(ROUNDS)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file (is {self.path!r} a results directory?)")
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def keep_rounds_up_to(self, last_round: int) -> None:
        """Drop the lines of rounds.jsonl after `last_round` (they are run again on resume)."""
        path = self.file(ROUNDS)
        if not os.path.exists(path):
            return
        kept = [line for line in self.read_rounds() if line["round"] <= last_round]
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in kept)
        os.replace(tmp, path)

    # -- checkpoint.npz -----------------------------------------------------
    def save_checkpoint(self, arrays: Dict[str, np.ndarray]) -> None:
        """Write checkpoint.npz atomically: a crash while writing leaves the previous one intact."""
        path = self.file(CHECKPOINT)
        tmp = path + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load_checkpoint(self) -> Optional[Dict[str, np.ndarray]]:
        """The arrays of checkpoint.npz (read without unpickling), or None when there is none."""
        path = self.file(CHECKPOINT)
        if not os.path.exists(path):
            return None
        with np.load(path, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}

    # -- summary.json, best_model.npy ------------------------------------------
    def write_summary(self, summary: Dict[str, Any]) -> None:
        write_json(self.file(SUMMARY), summary)

    def read_summary(self) -> Optional[Dict[str, Any]]:
        """summary.json, or None while the run has not finished."""
        path = self.file(SUMMARY)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            return json.load(f)

    def save_best_model(self, w: np.ndarray) -> str:
        """best_model.npy (atomic); returns its file name."""
        path = self.file(BEST_MODEL)
        tmp = path + ".tmp.npy"
        np.save(tmp, w)
        os.replace(tmp, path)
        return BEST_MODEL


def write_json(path: str, value: Any) -> None:
    """JSON, written atomically."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def read_rounds(path: str) -> List[Dict[str, Any]]:
    """The lines of `path`/rounds.jsonl (RunDirectory(path).read_rounds())."""
    return RunDirectory(path).read_rounds()


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
