"""The `fedrobust` command line.

    fedrobust run [flags] [--config TOML] [--resume DIR] [--ray [ADDRESS] [--actors N]]
    fedrobust plot DIR [DIR ...] [--mean] [--output PNG]
    fedrobust reproduce NAME [--trials N] [--shard I/N] [--quick] ...   (fedrobust reproduce --list)
    fedrobust sweep GRID.toml [--trials N] [--shard I/N] ...
    fedrobust info [--json]
    fedrobust bench [--quick] [--json PATH] [--repeats N] [--threads N] [--memory | --no-memory]
    fedrobust bench --simulation [--quick] [--json PATH] [--threads N] [--data-dir DIR]
    fedrobust bench --attacks [--quick] [--json PATH] [--repeats N] [--threads N] [--seed N]

Each subcommand is a pair of functions: `_add_<name>(subparsers)` declares its
flags and `cmd_<name>(args) -> int` runs it. To add one (run, plot,
reproduce), write the pair and list `_add_<name>` in `SUBCOMMANDS`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Tuple


# ---------------------------------------------------------------------------
# Argument types: argparse turns their errors into "fedrobust bench: error: ..."
# ---------------------------------------------------------------------------
def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def output_path(text: str) -> str:
    """A file path whose directory exists (checked before a long run, not after)."""
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"directory {directory!r} does not exist")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory, expected a file path")
    return text


# ---------------------------------------------------------------------------
# fedrobust info
# ---------------------------------------------------------------------------
def _add_info(subparsers: Any) -> None:
    p = subparsers.add_parser("info", help="show what was built and what this machine offers",
                              description="Show fedrobust.backend_info(): SIMD level, OpenMP threads, "
                                          "CUDA build and devices, numpy/torch/cupy versions.")
    p.add_argument("--json", action="store_true", help="print the raw dict as JSON")
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    """Print backend_info() as indented `key: value` lines, or as JSON with --json."""
    import fedrobust
    from fedrobust.benchmarks.machine import cpu_model

    info = fedrobust.backend_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"fedrobust {info['version']} (python {info['python']}, {info['machine']})")
    print(f"CPU model: {cpu_model()}")
    _print_section("CPU kernels", info["cpu"])
    _print_section("CUDA kernels", info["cuda"])
    print("libraries:")
    for name in ("numpy", "torch", "cupy"):
        print(f"  {name:<15} {info.get(name) or 'not installed'}")
    _print_registries()
    return 0


def _print_registries() -> None:
    """The rules and attacks, from their registries (aggregators.RULES, attacks.ATTACKS), and
    the defenses."""
    from fedrobust.aggregators import RULES
    from fedrobust.attacks import ATTACKS

    print("aggregation rules:")
    for rule in RULES.values():
        params = ", ".join(p.name for p in rule.params) or "no parameters"
        print(f"  {rule.name:<15} {rule.summary} ({params}; needs {rule.requirement})")
    print("attacks:")
    for attack in ATTACKS.values():
        print(f"  {attack.name:<15} {attack.summary}")
    from fedrobust.defenses import DEFENSES

    print(f"defenses (--defense): {', '.join(d for d in DEFENSES if d != 'none')} (fedrobust.defenses, the "
          "paper's Section 5)")


def _print_section(title: str, values: dict) -> None:
    print(f"{title}:")
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            value = ", ".join(map(str, value)) or "none"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        print(f"  {key:<15} {value}")


# ---------------------------------------------------------------------------
# fedrobust bench
# ---------------------------------------------------------------------------
def _add_bench(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench", help="time the aggregation rules against numpy and torch",
        description="Time fedrobust's rules against numpy and torch on float32 updates of shapes "
                    "(100, 1e6), (1000, 1e5) and (10000, 7850) (only the coordinate-wise rules) "
                    "(--quick: (100, 5e4) and (200, 1e4)), relative to one read of the array, and "
                    "measure each kernel's peak extra memory.")
    p.add_argument("--quick", action="store_true", help="small shapes, a few seconds in all")
    p.add_argument("--json", metavar="PATH", type=output_path, help="also write all numbers to PATH")
    p.add_argument("--repeats", metavar="N", type=positive_int,
                   help="timed calls per case, the best is kept (default 3; 5 with --attacks)")
    p.add_argument("--threads", metavar="N", type=positive_int,
                   help="threads for fedrobust and torch (default: fedrobust's OpenMP thread count)")
    mem = p.add_mutually_exclusive_group()
    mem.add_argument("--memory", dest="memory", action="store_true", default=None,
                     help="measure peak extra memory in fresh processes (default without --quick)")
    mem.add_argument("--no-memory", dest="memory", action="store_false",
                     help="skip the memory measurement")
    p.add_argument("--seed", type=int, default=0, help="seed of the random updates (default 0)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--simulation", action="store_true",
                      help="instead: rounds per second of the batched simulation against a per-worker "
                           "loop, one local step of the DNN and of ResNet20 against per-worker loops of "
                           "torch models, and seconds per round for 100 to 10,000 workers")
    mode.add_argument("--attacks", action="store_true",
                      help="instead: seconds to craft each attack (Krum, trim, Gaussian) against one "
                           "aggregation of the same (100, 1e6) float32 updates with the rule it "
                           "targets, and their ratio (--quick: (100, 5e4))")
    p.add_argument("--data-dir", help="with --simulation: MNIST IDX files for the loop comparison "
                                      "(default: synthetic MNIST-shaped data)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    """Run fedrobust.benchmarks.aggregation.run (or simulation.run, or attacks.run_attacks),
    print the table, write the JSON if asked."""
    from fedrobust.benchmarks import report

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    if args.simulation:
        from fedrobust._native import set_threads
        from fedrobust.benchmarks import simulation

        if args.threads:
            set_threads(args.threads)
        workers = [100, 300, 1000] if args.quick else [100, 1000, 3000, 10000]
        result = simulation.run(args.data_dir, workers, log=log, dnn_workers=20 if args.quick else 100,
                                resnet_workers=2 if args.quick else 8,
                                resnet_image=(1, 32, 32) if args.quick else (1, 64, 64))
        print(report.format_simulation_report(result))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
            print(f"\nwrote {args.json}")
        return 0

    if args.attacks:
        from fedrobust.benchmarks import attacks

        result = attacks.run_attacks(quick=args.quick, repeats=args.repeats, threads=args.threads,
                                     seed=args.seed, log=log)
        print(report.format_attack_report(result))
        if args.json:
            report.write_json(result, args.json)
            print(f"\nwrote {args.json}")
        return 0

    from fedrobust.benchmarks import aggregation

    result = aggregation.run(quick=args.quick, repeats=args.repeats, threads=args.threads,
                             memory=args.memory, seed=args.seed, log=log)
    print(report.format_report(result))
    if args.json:
        report.write_json(result, args.json)
        print(f"\nwrote {args.json}")
    return 0


# ---------------------------------------------------------------------------
# fedrobust run
# ---------------------------------------------------------------------------
# (flag, Config field, type, help or a function giving it). Flags default to None so that a value
# comes from, in order: the flag, the --config file, the Config default.
def _one_of(names: Any) -> str:
    names = list(names)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def _rule_help() -> str:
    from fedrobust.aggregators import RULES

    return "; ".join(f"{r.name} ({r.requirement})" if r.params else r.name for r in RULES.values())


def _attack_help() -> str:
    from fedrobust.attacks import ATTACKS

    return _one_of(ATTACKS)


def _dataset_help() -> str:
    from fedrobust.data import DATASETS

    return _one_of(DATASETS)


RUN_FLAGS = (
    ("--dataset", "dataset", str, _dataset_help),
    ("--model", "model", str, "lr, dnn or resnet20 (fedrobust.models.MODELS)"),
    ("--rule", "rule", str, _rule_help),
    ("--beta", "beta", int, "trimmed mean: values removed at each end (default: c)"),
    ("--krum-distance", "krum_distance", str, "squared (default) or plain Euclidean distances"),
    ("--attack", "attack", str, _attack_help),
    ("--knowledge", "knowledge", str, "what the attacker knows: full (every worker's update) or partial"),
    ("--attack-rule", "attack_rule", str,
     "the rule the attacker assumes (default: krum for the Krum attack, else --rule)"),
    ("--attack-fraction", "attack_fraction", float, "fraction of rounds attacked, drawn per round (default 1)"),
    ("--epsilon", "epsilon", float, "Krum attack: supporters within this distance (default 0.01)"),
    ("--goal", "goal", str, "directed (default) or deviation (the paper's Appendix B)"),
    ("--direction", "direction", str,
     "full knowledge: sum of all m updates (default), rule (the rule's output) or mean (benign)"),
    ("--on-failure", "on_failure", str, "Krum attack without a lambda: last (default) or benign"),
    ("--trim-reference", "trim_reference", str, "trim attack b-interval on model (default) or update values"),
    ("--trim-b", "trim_b", float, "trim attack, full knowledge: interval factor b (default 2)"),
    ("--workers", "workers", int, "number of workers m"),
    ("--compromised", "compromised", int, "number of compromised workers c (workers 0..c-1)"),
    ("--sample", "sample", int, "workers selected per round (default: all)"),
    ("--local-rounds", "local_rounds", int, "local SGD steps per round"),
    ("--q", "q", float, "degree of non-IID in [0, 1] (1/classes = IID)"),
    ("--train-examples", "train_examples", int,
     "train on a uniform sample of this many training examples (default: all; Table 5: 6000)"),
    ("--rounds", "rounds", int, "global rounds"),
    ("--lr", "lr", float, "local SGD learning rate on batch-mean gradients (default: per dataset)"),
    ("--batch-size", "batch_size", int, "local minibatch size"),
    ("--eval-every", "eval_every", int, "evaluate on the test set every k rounds"),
    ("--checkpoint-every", "checkpoint_every", int, "write a checkpoint every N rounds"),
    ("--seed", "seed", int, "seed of the split, partition, initialisation and sampling"),
    ("--data-dir", "data_dir", str, "directory with the IDX / CSV files (or set FEDROBUST_DATA)"),
    ("--out", "out", str, "results directory (default: results/<time>-<dataset>-<model>-<rule>)"),
    ("--device", "device", str, "cpu (default) or cuda (every rule and attack on the GPU; no defense)"),
    ("--defense", "defense", str, "none (default), err, lfr or union: the paper's Section 5 defenses"),
)


def _add_run(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="run a federated-learning simulation",
        description="Train all workers batched, aggregate with a robust rule, evaluate, and write "
                    "config.json, rounds.jsonl, checkpoints and summary.json to the results directory. "
                    "With no flags: a complete default experiment on scikit-learn's bundled digits.")
    for flag, field, kind, text in RUN_FLAGS:  # a callable help lists a registry's names
        p.add_argument(flag, dest=field, type=kind, default=None, help=text() if callable(text) else text)
    p.add_argument("--config", metavar="TOML", help="settings from a TOML file (flags override it)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR (or extend it: --rounds)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a run with other settings in --out (otherwise refused)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--threads", metavar="N", type=positive_int,
                   help="threads for fedrobust's kernels and torch (default: OMP_NUM_THREADS, else the CPUs); "
                        "the results do not depend on it, except the DNN / ResNet training (see README); "
                        "with --ray: threads (and CPUs) per actor, default 1")
    p.add_argument("--ray", metavar="ADDRESS", nargs="?", const="local",
                   help="train the workers on Ray actors (the same results): on the cluster at ADDRESS (for "
                        "example auto), or on a Ray started here when no ADDRESS is given; each actor holds "
                        "its block of workers' data")
    p.add_argument("--actors", metavar="N", type=positive_int,
                   help="with --ray: the number of actors (default: the cluster's CPUs / --threads)")
    p.set_defaults(func=cmd_run, needs=SIMULATOR)


def _run_config(args: argparse.Namespace):
    from fedrobust.config import Config
    from fedrobust.results import RunDirectory

    values: dict = {}
    if args.resume:
        if args.out is not None and os.path.abspath(args.out) != os.path.abspath(args.resume):
            raise ValueError(f"--resume {args.resume} and --out {args.out} name different directories; a resumed "
                             "run writes into its own directory (leave out --out)")
        saved = RunDirectory(args.resume).read_config()["config"]
        changed = [(flag, field) for flag, field, _, _ in RUN_FLAGS
                   if field not in ("rounds", "out") and getattr(args, field) is not None
                   and getattr(args, field) != saved.get(field)]
        if changed:
            flag, field = changed[0]
            raise ValueError(f"--resume {args.resume}: {flag} {getattr(args, field)} differs from the run's "
                             f"{field} = {saved.get(field)!r}; a resumed run keeps its settings (only --rounds "
                             "may change)")
        values.update(saved)
        values["out"] = args.resume
    if args.config:
        values.update(_read_toml(args.config))
    for _, field, _, _ in RUN_FLAGS:
        if getattr(args, field) is not None:
            values[field] = getattr(args, field)
    config = Config.from_dict(values)
    if not config.out:
        import time

        config.validate()  # before a directory is made for it
        base = os.path.join("results", time.strftime("%Y%m%d-%H%M%S") + f"-{config.dataset}-{config.model}-"
                            f"{config.rule}")
        config.out = RunDirectory.new_unique(base).path  # created now: two runs never share it
    return config  # Simulation(config) validates it and checks the directory before loading anything


def _read_toml(path: str) -> dict:
    from fedrobust.config import read_toml

    try:
        table = read_toml(path)
    except ValueError as e:
        raise ValueError(f"--config {e}") from None
    return {key.replace("-", "_"): value for key, value in table.items()}


def _with_flags(message: str) -> str:
    """The settings' messages ("setting 'batch_size' ...") with the flag that sets each one."""
    flags = {field: flag for flag, field, _, _ in RUN_FLAGS}
    return re.sub(r"setting '(\w+)'", lambda m: m.group(0) + (f" ({flags[m.group(1)]})" if m.group(1) in flags
                                                              else ""), message)


def _on_ray(args: argparse.Namespace) -> Any:
    """fedrobust.distributed.OnRay for --ray (None without it); --actors without --ray is refused."""
    if args.ray is None:
        if args.actors is not None:
            raise ValueError("--actors needs --ray")
        return None
    from fedrobust.distributed import OnRay, check_cluster_fits
    from fedrobust.executors import connect_ray

    address = None if args.ray == "local" else args.ray
    threads = args.threads or 1
    ray = connect_ray(address)
    actors = args.actors or max(int(ray.cluster_resources().get("CPU", 1)) // threads, 1)  # default: all CPUs
    check_cluster_fits(ray, actors, threads)  # before a results directory is made
    return OnRay(address, actors, threads)


def cmd_run(args: argparse.Namespace) -> int:
    """Validate every setting and the results directory before training, run, print the final
    test error. Every error a user can cause ends in one line and exit status 2; Ctrl-C in one
    line saying how to resume, exit status 130."""
    from fedrobust._native import set_threads
    from fedrobust.simulation import DivergedError, Simulation

    if args.threads and args.ray is None:
        set_threads(args.threads)
    try:
        config = _run_config(args)
        simulation = Simulation(config, progress=not args.quiet, overwrite=args.overwrite, on_ray=_on_ray(args))
    except KeyboardInterrupt:
        print("\nfedrobust run: interrupted before the first round", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError) as e:
        hint = " (fedrobust run takes the directory as --data-dir DIR)" if isinstance(e, FileNotFoundError) else ""
        print(f"fedrobust run: error: {_with_flags(str(e))}{hint}", file=sys.stderr)
        return 2
    print(f"results: {config.out}", file=sys.stderr)
    try:
        summary = simulation.run()
    except KeyboardInterrupt:
        print(f"\nfedrobust run: interrupted; continue with: fedrobust run --resume {config.out}", file=sys.stderr)
        return 130
    except (ValueError, DivergedError, OSError) as e:
        print(f"\nfedrobust run: error: {e}", file=sys.stderr)
        return 2
    print(f"final test error {summary['final_test_error']:.4f} "
          f"(best {summary['best_test_error']:.4f} at round {summary['best_round']}), "
          f"{summary['rounds']} rounds, {summary['rounds_per_second'] or 0:.1f} rounds/s; "
          f"results in {config.out}")
    return 0


# ---------------------------------------------------------------------------
# fedrobust plot
# ---------------------------------------------------------------------------
def _add_plot(subparsers: Any) -> None:
    p = subparsers.add_parser("plot", help="plot test error versus round of a results directory",
                              description="Write the test-error-versus-round figure of one or more "
                                          "results directories as a PNG (needs matplotlib). A sweep's cell "
                                          "directory (OUT/<row>--<column>, holding seed-<k> runs) is drawn as "
                                          "the mean over its seeds with a band of one std.")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="results directories (with rounds.jsonl) or sweep cells")
    p.add_argument("--mean", action="store_true",
                   help="the directories are seeds of one setting: draw their mean with a band of one std")
    p.add_argument("--output", metavar="PNG", help="file to write (default: DIR/test_error.png)")
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from fedrobust.plotting import plot_test_error

    try:
        path = plot_test_error(args.dirs, args.output, mean=args.mean)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"fedrobust plot: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


# ---------------------------------------------------------------------------
# fedrobust reproduce / fedrobust sweep: grids of runs (fedrobust.sweep)
# ---------------------------------------------------------------------------
# --quick: the pipeline, not the numbers: a few rounds on data that ships with scikit-learn,
# per model (the DNN needs images of 10 x 10 or more, or feature vectors).
QUICK = dict(rounds=2, eval_every=1)
QUICK_DATASET = {"lr": "digits", "dnn": "breast_cancer", "resnet20": "digits"}
QUICK_TRAIN_EXAMPLES = 500  # a grid that samples its training examples (table5) samples this many of digits' 1,437


def _add_grid_flags(p: argparse.ArgumentParser, default_out: str) -> None:
    p.add_argument("--out", help=f"results directory (default: {default_out})")
    p.add_argument("--data-dir", help="directory with the dataset's files (or set FEDROBUST_DATA)")
    p.add_argument("--rounds", type=positive_int, help="global rounds of every cell (default: the grid's)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="where every cell trains (default: the grid's, cpu)")
    p.add_argument("--trials", type=positive_int, help="seeds 0 .. N-1 per cell (default: the grid's)")
    p.add_argument("--seeds", help="the seeds of every cell, comma-separated (instead of --trials)")
    p.add_argument("--shard", metavar="I/N", help="run only every N-th cell, starting at cell I (1 <= I <= N), "
                                                  "to split a grid over processes or machines")
    p.add_argument("--collect", action="store_true", help="run nothing: the table of the cells finished so far")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK['rounds']} rounds on data that ships with scikit-learn (digits; Breast Cancer "
                        "for the DNN), one seed (unless --trials / --seeds): checks the pipeline and the "
                        "outputs, not the numbers")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", metavar="N", type=positive_int,
                   help="threads per run for fedrobust's kernels and torch (default: OMP_NUM_THREADS, else the "
                        "CPUs; 1 with --jobs or --ray, where Ray reserves N CPUs per run)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--jobs", metavar="N", type=positive_int,
                       help="run N cells at a time in a local pool of processes")
    where.add_argument("--ray", metavar="ADDRESS", nargs="?", const="local",
                       help="run the cells as Ray tasks: on the cluster at ADDRESS (for example auto, or "
                            "ray://host:10001), or on a Ray started here when no ADDRESS is given; every node "
                            "must see --out and --data-dir at the same paths")


def _executor(args: argparse.Namespace) -> Any:
    """Where the grid's runs go: --jobs (a local pool), --ray (Ray tasks) or this process."""
    from fedrobust import executors

    if args.jobs is not None:
        return executors.Pool(args.jobs, threads=args.threads or 1)
    if args.ray is not None:
        return executors.Ray(None if args.ray == "local" else args.ray, threads=args.threads or 1)
    return executors.Serial(progress=not args.quiet, threads=args.threads)


def _run_grid_command(command: str, grid: Any, out: str, args: argparse.Namespace) -> int:
    """Shared body of `reproduce` and `sweep`: the flags applied to `grid`, the estimate, the
    runs, the table printed."""
    from fedrobust import sweep
    from fedrobust.executors import RunsFailed

    try:
        executor = _executor(args)
        if args.seeds is not None and args.trials is not None:
            raise ValueError("give --trials or --seeds, not both")
        overrides: Dict[str, Any] = {}
        if args.quick:  # one seed unless --trials / --seeds say otherwise
            dataset = QUICK_DATASET[grid.base.get("model", "lr")]
            overrides.update(QUICK, dataset=dataset)
            if grid.base.get("train_examples") is not None:
                overrides["train_examples"] = QUICK_TRAIN_EXAMPLES
            grid = dataclasses.replace(grid.with_seeds(grid.seeds[:1]), description=(
                f"{grid.description} [--quick: {dataset}, {QUICK['rounds']} rounds]"))
        if args.seeds is not None:
            grid = grid.with_seeds(sweep.seeds_from(_int_list(args.seeds, "--seeds"), "--seeds"))
        elif args.trials is not None:
            grid = grid.with_seeds(range(args.trials))
        if args.rounds is not None:
            overrides["rounds"] = args.rounds
        if args.device is not None:
            overrides["device"] = args.device
        if args.data_dir is not None:
            overrides["data_dir"] = args.data_dir
        shard = _shard(args.shard)
        if not args.collect:
            seeds = list(grid.seeds)
            shown = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 3 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
                else ", ".join(map(str, seeds))
            print(f"{command}: {grid.name}, {len(grid.cells)} cells x {len(seeds)} seeds ({shown}) into {out}",
                  file=sys.stderr)
            print(_estimate(grid, overrides), file=sys.stderr)
        table = sweep.run_grid(grid, out, overrides=overrides, shard=shard, collect=args.collect,
                               progress=not args.quiet, executor=executor)
    except RunsFailed as e:  # the others ran: their table, then the failures
        _print_table(e.table, out)
        print(f"fedrobust {command}: error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"fedrobust {command}: error: {e}", file=sys.stderr)
        return 2
    _print_table(table, out)
    return 0


def _print_table(table: Dict[str, Any], out: str) -> None:
    from fedrobust import sweep

    print(sweep.format_table(table))
    shown = table["key"].replace("_", " ")
    print(f"\n{shown}, mean ± std over the seeds; results, table.csv, table.json and table.md in {out}")


def _estimate(grid: Any, overrides: Dict[str, Any]) -> str:
    from fedrobust import experiments

    seconds = experiments.estimated_seconds(grid, overrides)
    text = f"estimated {experiments.format_duration(seconds)} on a 2-core CPU (finished runs are read back)"
    if (seconds is None or seconds > 3600) and overrides.get("device", grid.base.get("device", "cpu")) == "cpu":
        text += "; consider --device cuda, --shard I/N over processes or machines, or fewer --rounds / --trials"
    return text


def _int_list(text: str, flag: str) -> List[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated integers, got {text!r}") from None


def _shard(text: Optional[str]) -> Tuple[int, int]:
    if text is None:
        return (1, 1)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise ValueError(f"--shard: expected I/N with 1 <= I <= N, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _add_reproduce(subparsers: Any) -> None:
    from fedrobust.experiments import ALIASES, PRESETS

    p = subparsers.add_parser(
        "reproduce", help="run one of the paper's experiments (a preset grid) and print its table",
        description="Run every cell of a preset of fedrobust.experiments for its seeds, one results "
                    "directory per cell and seed under --out (finished ones are read back, interrupted ones "
                    "resume), then print the table (mean ± std over the seeds, the paper's value beside ours "
                    "where known) and write table.csv, table.json and table.md. --list shows the presets.")
    p.add_argument("grid", nargs="?", metavar="NAME", help=f"one of: {', '.join(list(PRESETS) + list(ALIASES))}")
    p.add_argument("--list", action="store_true", help="list the presets with their size and estimated time")
    _add_grid_flags(p, "results/<NAME>")
    p.set_defaults(func=cmd_reproduce, needs=SIMULATOR)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from fedrobust import experiments

    if args.list:
        print(experiments.describe_presets())
        return 0
    if args.grid is None:
        print("fedrobust reproduce: error: name a preset (fedrobust reproduce --list shows them)", file=sys.stderr)
        return 2
    try:
        grid = experiments.preset(args.grid)
    except ValueError as e:
        print(f"fedrobust reproduce: error: {e}", file=sys.stderr)
        return 2
    return _run_grid_command("reproduce", grid, args.out or os.path.join("results", grid.name), args)


def _add_sweep(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a grid of settings (GRID.toml) for several seeds and print its table",
        description="Run the cells of GRID.toml (lists of values expand into cells; seeds = N or a list; "
                    "see fedrobust.sweep) for every seed, one results directory per cell and seed, then "
                    "print the table of final test errors (mean ± std) and write table.csv, table.json and "
                    "table.md.")
    p.add_argument("grid_file", metavar="GRID.toml")
    _add_grid_flags(p, "results/<grid name>")
    p.set_defaults(func=cmd_sweep, needs=SIMULATOR)


def cmd_sweep(args: argparse.Namespace) -> int:
    from fedrobust import sweep

    try:
        grid = sweep.read_grid(args.grid_file)
    except ValueError as e:
        print(f"fedrobust sweep: error: {e}", file=sys.stderr)
        return 2
    return _run_grid_command("sweep", grid, args.out or os.path.join("results", grid.name), args)


# ---------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------
SUBCOMMANDS = (_add_run, _add_plot, _add_reproduce, _add_sweep, _add_info, _add_bench)


def build_parser() -> argparse.ArgumentParser:
    """The `fedrobust` parser with one subparser per entry of SUBCOMMANDS."""
    from fedrobust import __version__

    parser = argparse.ArgumentParser(
        prog="fedrobust",
        description="Byzantine-robust aggregation rules: fast native kernels, benchmarks, experiments.")
    parser.add_argument("--version", action="version", version=f"fedrobust {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def _join_negative_values(argv: List[str]) -> List[str]:
    """"--q -inf" as "--q=-inf": argparse takes a value that starts with '-' and is not a plain
    number (-inf, -nan, -1e3) for an option; joined, it reaches the settings' own check."""
    out: List[str] = []
    for token in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.fullmatch(
                r"-(inf|infinity|nan|[0-9.]+e[-+]?[0-9]+)", token, re.IGNORECASE):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


# The packages of each extra (pyproject.toml): a command that needs a missing one says which
# extra installs it.
EXTRAS = {"torch": "sim", "sklearn": "sim", "ray": "dist", "matplotlib": "plot", "flwr": "flower"}
SIMULATOR = ("torch", "sklearn")  # fedrobust run / reproduce / sweep / bench --simulation


def missing_extra(modules: Tuple[str, ...]) -> Optional[str]:
    """None when every module imports; else "needs X: pip install 'fedrobust[extra]'"."""
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            package = {"sklearn": "scikit-learn"}.get(name, name)
            return f"needs {package}, which is not installed: pip install 'fedrobust[{EXTRAS[name]}]'"
    return None


def main(argv: Optional[List[str]] = None) -> int:
    """Parse argv (default sys.argv[1:]) and run the chosen subcommand; returns the exit status."""
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(argv)
    needs = getattr(args, "needs", ()) or (SIMULATOR if getattr(args, "simulation", False) else ())
    if getattr(args, "ray", None) is not None:
        needs = (*needs, "ray")
    missing = missing_extra(needs)
    if missing:
        print(f"fedrobust {args.command}: error: this command {missing}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
