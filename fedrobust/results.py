"""The results directory of one run: the only code that reads or writes its files.

    config.json      every setting and what it resolved to (written when the run starts,
                     rewritten when a resumed run is extended)
    rounds.jsonl     one JSON line per evaluated round, appended as it happens
    checkpoint.npz   the loop's state every `checkpoint_every` rounds (atomic; no pickles),
                     with a fingerprint of the settings it belongs to
    summary.json     final and best test error, rounds, speed, attack means (at the end)
    best_model.npy   the global model of the lowest test error (the paper's Table 3 strategy)
    .lock            held by the run that writes the directory, for its lifetime

What a results directory guarantees:
  - exclusive: a run holds the directory's lock (an OS file lock, released when the process
    ends, however it ends); a second run on it fails at once, naming the holder;
  - never silently overwritten or mixed: a run starts only in an empty directory or in one
    holding a run of the same settings (which it resumes); anything else is refused unless
    the caller asks to overwrite;
  - resumable line for line: an interrupted run resumed ends with the files of an
    uninterrupted one; an incomplete last line of rounds.jsonl (a crash mid-write) is dropped;
  - strict JSON: every file is valid JSON (NaN and infinities are written as null);
  - whole-file writes go to a temporary file unique to the writer and are then renamed over
    the old one, so a crash leaves the previous version intact.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import sys
import time
import uuid
import zipfile
import zlib
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

CONFIG = "config.json"
ROUNDS = "rounds.jsonl"
CHECKPOINT = "checkpoint.npz"
SUMMARY = "summary.json"
BEST_MODEL = "best_model.npy"
LOCK = ".lock"
RUN_FILES = (CONFIG, ROUNDS, CHECKPOINT, SUMMARY, BEST_MODEL)
_TEMPORARY = ".tmp-"  # in every temporary file's name


class RunDirectoryError(ValueError):
    """A results directory that cannot be used as asked; the message names it and says why."""


class RunDirectory:
    """The files of one run in `path` (see the module docstring)."""

    def __init__(self, path: str):
        self.path = str(path)
        self._lock_file: Optional[Any] = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- creating and holding it ----------------------------------------------
    def create(self) -> None:
        """The directory (and its parents); RunDirectoryError when it cannot be made or written."""
        try:
            os.makedirs(self.path, exist_ok=True)
        except FileExistsError:
            raise RunDirectoryError(f"{self.path} is a file, not a directory") from None
        except NotADirectoryError:
            raise RunDirectoryError(f"{self.path}: a parent of it is a file, not a directory") from None
        except OSError as e:
            raise RunDirectoryError(f"{self.path}: cannot create the directory ({e.strerror})") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunDirectoryError(f"{self.path}: the directory is not writable")

    @classmethod
    def new_unique(cls, base: str) -> RunDirectory:
        """A new directory named `base`, or base-2, base-3, ... if that exists: created
        atomically, so two runs never get the same one."""
        os.makedirs(os.path.dirname(base) or ".", exist_ok=True)
        for k in range(1, 10_000):
            path = base if k == 1 else f"{base}-{k}"
            try:
                os.mkdir(path)
                return cls(path)
            except FileExistsError:
                continue
        raise RunDirectoryError(f"{base}: no free name among {base}-2 .. {base}-9999")

    def acquire(self) -> None:
        """Hold the directory's lock (created if needed) until release() or the end of the
        process; RunDirectoryError naming the holder when another process holds it."""
        self.create()
        f = open(self.file(LOCK), "a+")
        if not _try_lock(f):
            f.seek(0)
            holder = f.read().strip() or "unknown process"
            f.close()
            raise RunDirectoryError(f"{self.path} is in use by another run ({holder}); wait for it to finish "
                                    "or choose another --out directory")
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                f"{' '.join(sys.argv) or 'python'}\n")
        f.flush()
        self._lock_file = f

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None

    def check_free(self) -> None:
        """RunDirectoryError when another process holds the directory (nothing is held after)."""
        self.acquire()
        self.release()

    def __enter__(self) -> RunDirectory:
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # -- what it holds ------------------------------------------------------
    def entries(self) -> List[str]:
        """The directory's files, without the lock and leftover temporary files."""
        if not os.path.isdir(self.path):
            return []
        return sorted(e for e in os.listdir(self.path) if e != LOCK and _TEMPORARY not in e)

    def check_can_hold(self, settings: Dict[str, Any], overwrite: bool = False) -> bool:
        """Whether a run of `settings` may write here: True to continue the run already here
        (same settings), False to start afresh (empty, or overwrite); else RunDirectoryError:
        the directory holds files that are not a run, or a run with other settings.
        `rounds` and `out` do not count as settings here (a run may be extended)."""
        entries = self.entries()
        if not entries:
            return False
        foreign = [e for e in entries if e not in RUN_FILES]
        if foreign:
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise RunDirectoryError(f"{self.path} holds files that are not a run's ({shown}); "
                                    "choose an empty or new --out directory")
        if overwrite:
            return False
        if CONFIG not in entries:
            raise RunDirectoryError(f"{self.path} holds {', '.join(entries)} but no {CONFIG}: not a run fedrobust "
                                    "can resume; pass --overwrite to replace it or choose another --out")
        saved = self.read_config().get("config", {})
        differing = sorted(k for k in settings if k not in ("out", "rounds") and saved.get(k) != settings[k])
        if differing:
            shown = ", ".join(f"{k} = {saved.get(k)!r} there, {settings[k]!r} here" for k in differing[:4])
            raise RunDirectoryError(f"{self.path} holds a run with other settings ({shown}); resume it with its "
                                    "own settings, choose another --out, or pass --overwrite to replace it")
        return True

    def remove_run(self) -> None:
        """Delete the run's files (for an explicit overwrite); nothing else is touched."""
        for name in RUN_FILES:
            if os.path.exists(self.file(name)):
                os.remove(self.file(name))

    # -- config.json --------------------------------------------------------
    def write_config(self, description: Dict[str, Any]) -> None:
        write_json(self.file(CONFIG), description)

    def read_config(self) -> Dict[str, Any]:
        """config.json; RunDirectoryError when the directory holds none or it is damaged."""
        path = self.file(CONFIG)
        if not os.path.exists(path):
            raise RunDirectoryError(f"{self.path}: no {CONFIG} there (not a results directory)")
        try:
            with open(path) as f:
                value = json.load(f)
        except (OSError, ValueError) as e:
            raise RunDirectoryError(f"{path}: not readable as JSON ({e})") from None
        if not isinstance(value, dict) or not isinstance(value.get("config"), dict):
            raise RunDirectoryError(f"{path}: expected an object with a 'config' object of settings")
        return value

    # -- rounds.jsonl -------------------------------------------------------
    def start_rounds(self) -> None:
        """An empty rounds.jsonl (a new run)."""
        open(self.file(ROUNDS), "w").close()

    def append_round(self, line: Dict[str, Any]) -> None:
        """One line, in one write (strict JSON)."""
        with open(self.file(ROUNDS), "a") as f:
            f.write(strict_json(line) + "\n")

    def read_rounds(self) -> List[Dict[str, Any]]:
        """The lines of rounds.jsonl as dicts. FileNotFoundError naming the directory when absent;
        RunDirectoryError naming the file and line of any line that is not a JSON object with
        an integer "round", an incomplete last line included."""
        lines, torn = self._parse_rounds()
        if torn is not None:
            raise RunDirectoryError(f"{self.file(ROUNDS)}:{torn}: incomplete last line (the run was interrupted "
                                    "while writing it; resuming the run drops it)")
        return lines

    def keep_rounds_up_to(self, last_round: int) -> Optional[str]:
        """Keep the lines of rounds up to `last_round` (the later ones are run again on resume)
        and drop an incomplete last line; returns a note saying so when one was dropped."""
        path = self.file(ROUNDS)
        if not os.path.exists(path):
            return None
        lines, torn = self._parse_rounds()
        kept = [line for line in lines if line["round"] <= last_round]
        tmp = _temporary_name(path)
        with open(tmp, "w") as f:
            f.writelines(strict_json(line) + "\n" for line in kept)
        os.replace(tmp, path)
        return None if torn is None else f"{path}:{torn}: dropped an incomplete last line"

    def _parse_rounds(self) -> Tuple[List[Dict[str, Any]], Optional[int]]:
        """(the complete lines, the number of an incomplete last line or None)."""
        path = self.file(ROUNDS)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file (is {self.path!r} a results directory?)")
        with open(path, "rb") as f:
            raw = f.read()
        chunks = raw.split(b"\n")
        torn = None
        if chunks and chunks[-1].strip():  # text after the last newline: a line cut short
            torn = len(chunks)
        lines = []
        for number, chunk in enumerate(chunks[:-1], start=1):
            if not chunk.strip():
                continue
            try:
                value = json.loads(chunk)
            except ValueError as e:
                raise RunDirectoryError(f"{path}:{number}: not valid JSON ({e})") from None
            if not isinstance(value, dict) or not _is_int(value.get("round")):
                raise RunDirectoryError(f"{path}:{number}: expected a JSON object with an integer 'round'")
            lines.append(value)
        return lines, torn

    # -- checkpoint.npz -----------------------------------------------------
    def save_checkpoint(self, arrays: Dict[str, np.ndarray]) -> None:
        """Write checkpoint.npz atomically: a crash while writing leaves the previous one intact."""
        path = self.file(CHECKPOINT)
        tmp = _temporary_name(path) + ".npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, path)

    def load_checkpoint(self) -> Optional[Dict[str, np.ndarray]]:
        """The arrays of checkpoint.npz, read without unpickling, or None when there is none;
        RunDirectoryError naming the file for a damaged one."""
        path = self.file(CHECKPOINT)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {name: np.asarray(z[name]) for name in z.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            raise RunDirectoryError(f"{path}: damaged checkpoint ({type(e).__name__}: {e}); remove it to start "
                                    "the run again, or restore it") from None

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
        tmp = _temporary_name(path) + ".npy"
        np.save(tmp, w)
        os.replace(tmp, path)
        return BEST_MODEL


# ---------------------------------------------------------------------------
# Files, locks, strict JSON
# ---------------------------------------------------------------------------
def _temporary_name(path: str) -> str:
    """A temporary file name beside `path`, unique to this process and call."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}{_TEMPORARY}{os.getpid()}-{uuid.uuid4().hex[:12]}")


def _try_lock(f: Any) -> bool:
    """An exclusive, non-blocking OS lock on the open file f (released when it is closed or
    the process ends): whether it was taken."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _finite_or_none(value: Any) -> Any:
    """value with every NaN / infinity (also numpy scalars and arrays) replaced by None."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite_or_none(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def strict_json(value: Any, indent: Optional[int] = None) -> str:
    """value as strict JSON: NaN and infinities become null (never the non-standard NaN / Infinity)."""
    return json.dumps(_finite_or_none(value), indent=indent, allow_nan=False)


def write_text(path: str, text: str) -> None:
    """text, written atomically (a temporary file beside `path`, then renamed over it)."""
    tmp = _temporary_name(path)
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def write_json(path: str, value: Any) -> None:
    """Strict JSON, written atomically."""
    write_text(path, strict_json(value, indent=2) + "\n")


def settings_fingerprint(settings: Dict[str, Any]) -> str:
    """A short hash of the settings a checkpoint belongs to (`out` and `rounds` left out: a
    run may move or be extended)."""
    kept = {k: v for k, v in settings.items() if k not in ("out", "rounds")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


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


def summarize_defense(lines: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Over the rounds listed in the lines' "defense" entries: how many workers the defense
    removed per round, the detection rate (compromised workers removed / compromised workers
    selected, over all rounds), the benign workers removed per round, and per ranking (err,
    lfr) how many removals per round the tie rule decided (lower index first among equal
    impacts: a large number means the ranking could not tell those workers apart)."""
    rounds = [r for line in lines for r in line.get("defense", ())]
    if not rounds:
        return {"rounds": 0}
    hit, present = sum(r["removed_compromised"] for r in rounds), sum(r["compromised"] for r in rounds)
    rankings = sorted({k for r in rounds for k in r.get("decided_by_index", {})})
    return {"rounds": len(rounds),
            "removed_mean": float(np.mean([len(r["removed"]) for r in rounds])),
            "detection_rate": hit / present if present else None,
            "benign_removed_mean": float(np.mean([r["removed_benign"] for r in rounds])),
            "decided_by_index_mean": {k: float(np.mean([r.get("decided_by_index", {}).get(k, 0) for r in rounds]))
                                      for k in rankings}}
