"""Where a sweep's runs execute: one after another in this process (the default), in a local
pool of processes (`--jobs N`) or as tasks on a Ray cluster (`--ray [ADDRESS]`).

Each run is one simulation of one cell and seed, writing its own results directory; the
runs share nothing, so every executor gives the same results bit for bit for the same
threads per run (each run has its own seeds and fedrobust's kernels are deterministic at any
thread count; torch's float32 matrix products, the model's forward pass, may round the last
bits differently with another thread count). A run that fails is reported with its error and
does not stop the others; the failures are listed together at the end (`RunsFailed`). A
missing data file (FileNotFoundError) stops the sweep at once: every run would fail on it.

    runs = [Run("median / none, seed 0", config_dict), ...]
    failures = execute(runs, Pool(jobs=2), log=print)

A Pool or Ray run uses `threads` threads (default 1: the parallelism is across runs; Ray
reserves as many CPUs per task). With Ray, every node must see the results directory and
the data at the same paths (a shared disk), or the cells' directories are copied into one
place afterwards and read back with `--collect`.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class Run:
    """One simulation to run: a label for the log and its settings (Config fields)."""

    label: str
    settings: Dict[str, Any]


class RunsFailed(ValueError):
    """Some runs of a sweep failed; the others ran. `failures`: (label, error message)."""

    def __init__(self, failures: Sequence[Tuple[str, str]], total: int):
        self.failures = list(failures)
        self.table: Optional[Dict[str, Any]] = None  # a sweep's table of the runs that finished (run_grid sets it)
        lines = "\n".join(f"  {label}: {error}" for label, error in self.failures)
        super().__init__(f"{len(self.failures)} of {total} runs failed (the others finished):\n{lines}")


@dataclasses.dataclass(frozen=True)
class Serial:
    """In this process, one after another, with the simulation's progress bars; `threads`
    threads (None: as set, by default the CPUs)."""

    progress: bool = True
    threads: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Pool:
    """A local pool of `jobs` processes (spawned, so each has its own OpenMP and torch)."""

    jobs: int
    threads: int = 1


@dataclasses.dataclass(frozen=True)
class Ray:
    """Ray tasks on the cluster at `address` (None: start a local Ray with `cpus` CPUs, all
    of this machine's by default), each reserving `threads` CPUs."""

    address: Optional[str] = None
    threads: int = 1
    cpus: Optional[int] = None


Executor = Any  # Serial | Pool | Ray


def run_settings(settings: Dict[str, Any], threads: Optional[int] = None, progress: bool = False) -> float:
    """Run one simulation of `settings` (with `threads` threads where given) and return its
    final test error. The function a pool process or a Ray task calls."""
    from fedrobust._native import set_threads
    from fedrobust.config import Config
    from fedrobust.simulation import Simulation

    if threads is not None:
        set_threads(threads)
    summary = Simulation(Config.from_dict(settings), progress=progress).run()
    return float(summary["final_test_error"])


class _Progress:
    """`done / running / failed / left` and an ETA from the mean time of a run so far."""

    def __init__(self, total: int, log: Log):
        self.total, self.log = total, log
        self.done = self.failed = 0
        self.start = time.monotonic()

    def finished(self, label: str, error: Optional[str], result: Optional[float], running: int) -> None:
        if error is None:
            self.done += 1
            what = f"final test error {result:.4f}"
        else:
            self.failed += 1
            what = f"FAILED: {error}"
        finished = self.done + self.failed
        left = self.total - finished
        elapsed = time.monotonic() - self.start
        eta = elapsed / finished * left  # the runs so far set the pace, parallelism included
        self.log(f"{label}: {what}  [{self.done} done, {running} running, {self.failed} failed, {left} left; "
                 f"ETA {_duration(eta)}]")


def execute(runs: Sequence[Run], executor: Executor, log: Log = lambda s: print(s, file=sys.stderr)) -> None:
    """Run every run on `executor`; raise RunsFailed listing those that failed (after all the
    others have finished)."""
    if not runs:
        return
    if isinstance(executor, Serial):
        failures = _serial(runs, executor, log)
    elif isinstance(executor, Pool):
        failures = _pool(runs, executor, log)
    elif isinstance(executor, Ray):
        failures = _ray(runs, executor, log)
    else:
        raise TypeError(f"executor must be Serial, Pool or Ray, got {type(executor).__name__}")
    if failures:
        raise RunsFailed(failures, len(runs))


def _serial(runs: Sequence[Run], executor: Serial, log: Log) -> List[Tuple[str, str]]:
    progress, failures = _Progress(len(runs), log), []
    for run in runs:
        log(f"{run.label}: running")
        try:
            result = run_settings(run.settings, executor.threads, progress=executor.progress)
        except FileNotFoundError:
            raise
        except Exception as e:  # reported with the others; an interrupt still stops the sweep
            error = _error_text(e)
            failures.append((run.label, error))
            progress.finished(run.label, error, None, 0)
            continue
        progress.finished(run.label, None, result, 0)
    return failures


def _pool(runs: Sequence[Run], executor: Pool, log: Log) -> List[Tuple[str, str]]:
    import concurrent.futures
    import multiprocessing

    if executor.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {executor.jobs}")
    progress, failures = _Progress(len(runs), log), []
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=executor.jobs, mp_context=context) as pool:
        pending = {pool.submit(run_settings, run.settings, executor.threads): run for run in runs}
        try:
            while pending:
                done, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in done:
                    run = pending.pop(future)
                    running = min(len(pending), executor.jobs)
                    exception = future.exception()
                    if isinstance(exception, FileNotFoundError):
                        raise exception
                    error = _error_text(exception)
                    if error is not None:
                        failures.append((run.label, error))
                    progress.finished(run.label, error, None if error else future.result(), running)
        except BaseException:
            for future in pending:
                future.cancel()
            raise
    return failures


def _ray(runs: Sequence[Run], executor: Ray, log: Log) -> List[Tuple[str, str]]:
    if executor.threads < 1:
        raise ValueError(f"threads per Ray task must be >= 1, got {executor.threads}")
    ray = connect_ray(executor.address, executor.cpus)
    slots = max(int(ray.cluster_resources().get("CPU", 1)) // executor.threads, 1)
    progress, failures = _Progress(len(runs), log), []
    task = ray.remote(num_cpus=executor.threads)(run_settings)
    pending = {task.remote(run.settings, executor.threads): run for run in runs}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done[0])
            try:
                result, error = ray.get(done[0]), None
            except ray.exceptions.RayTaskError as e:  # the run's own exception, raised in the task
                if isinstance(e.cause, FileNotFoundError):
                    raise e.cause from None
                result, error = None, _error_text(e.cause if e.cause is not None else e)
            if error is not None:
                failures.append((run.label, error))
            progress.finished(run.label, error, result, min(len(pending), slots))
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    return failures


def connect_ray(address: Optional[str] = None, cpus: Optional[int] = None) -> Any:
    """The ray module, connected: to the cluster at `address`, or (None) to a Ray started here
    with `cpus` CPUs (all of this machine's by default); as it is when already initialised."""
    ray = require_ray()
    if not ray.is_initialized():
        options: Dict[str, Any] = dict(include_dashboard=False, log_to_driver=False)
        if address is None:
            options["num_cpus"] = cpus
        ray.init(address=address, **options)
    return ray


def require_ray() -> Any:
    """The ray module, or ImportError saying which extra installs it."""
    try:
        import ray
    except ImportError:
        raise ImportError("Ray is not installed: pip install 'fedrobust[dist]' (or pip install ray)") from None
    return ray


def _error_text(error: Optional[BaseException]) -> Optional[str]:
    if error is None:
        return None
    return str(error) if isinstance(error, (ValueError, OSError)) else f"{type(error).__name__}: {error}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
