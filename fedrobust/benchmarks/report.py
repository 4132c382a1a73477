"""The benchmarks' plain-text tables (what ``fedrobust bench`` prints) and their JSON files."""
from __future__ import annotations

import json
from typing import List, Optional


def _fmt_load(load: Optional[float]) -> str:
    return "unknown" if load is None else f"{load:.2f}"


def _format_machine_load(mach: dict) -> str:
    """How busy the rest of the machine was during the run (other work skews the timings)."""
    load = (f"load average (1 min) {_fmt_load(mach['load_average_before'])} before, "
            f"{_fmt_load(mach['load_average_after'])} after")
    other = mach["other_processes_cpu_seconds"]
    if other is None:
        return f"machine load: {load}"
    share = max(other, 0.0) / (mach["wall_seconds"] * (mach["logical_cpus"] or 1))
    return (f"machine load: other processes used {max(other, 0.0):.1f} CPU-s during the "
            f"{mach['wall_seconds']:.0f} s run ({share:.0%} of the CPUs); {load}")


def _fmt_seconds(s: float) -> str:
    return f"{s:.4f}" if s < 10 else f"{s:.2f}"


def format_report(result: dict) -> str:
    """The tables of `aggregation.run`: a header, then one block per shape."""
    st, mach, info = result["settings"], result["machine"], result["backend_info"]
    lines = [
        "fedrobust benchmark: aggregation rules vs numpy, torch, Flower's aggregation functions and byzfl",
        f"CPU: {mach['cpu_model']} ({mach['logical_cpus']} logical CPUs), SIMD {mach['simd']}",
        f"threads: {st['threads']} (fedrobust and torch); numpy runs single-threaded except BLAS (U @ U.T)",
        _format_machine_load(mach),
        (f"versions: fedrobust {info['version']}, numpy {info['numpy']}, torch {info.get('torch') or 'not installed'}, "
         f"flwr {info.get('flwr') or 'not installed'}, byzfl {info.get('byzfl') or 'not installed'}"),
        (f"timing: best of {st['repeats']} calls after {st['warmup']} warm-up; "
        "'x read' = seconds / read-once time;"),
        ("'speedup' = time of the fastest numpy / torch / Flower / byzfl row of the rule / fedrobust's time "
         "(< 1: fedrobust is slower)"),
    ]
    for shape in result["shapes"]:
        lines += [""] + _format_shape(shape, st)
    return "\n".join(lines)


def _format_shape(shape: dict, settings: dict) -> List[str]:
    ro = shape["read_once"]["seconds"]
    read = ", ".join(f"{impl} {_fmt_seconds(s)} s" for impl, s in ro.items())
    lines = [
        (f"== U: ({shape['m']}, {shape['d']}) {shape['dtype']}, {shape['u_mib']:.1f} MiB; "
        f"c = {shape['c']}, beta = {shape['beta']}, seed {shape['seed']} =="),
        f"read-once (column sum): {read} -> reference {_fmt_seconds(shape['read_once']['best'])} s",
    ]
    memory = settings["memory"]
    header = f"{'rule':<17}{'impl':<12}{'how':<32}{'seconds':>9}{'x read':>8}{'speedup':>9}"
    if memory:
        header += f"{'peak extra MiB':>16}"
    lines += [header, "-" * len(header)]
    previous = None
    for row in shape["rows"]:
        rule = row["rule"] if row["rule"] != previous else ""
        previous = row["rule"]
        speedup = f"{row['speedup']:.1f}x" if "speedup" in row else ""
        line = (f"{rule:<17}{row['impl']:<12}{row['label']:<32}{_fmt_seconds(row['seconds']):>9}"
                f"{row['x_read_once']:>8.1f}{speedup:>9}")
        if memory and "peak_extra_mib" in row:
            line += f"{row['peak_extra_mib']:>16.1f}"
        lines.append(line.rstrip())
    if memory:
        lines.append(f"peak extra MiB: growth of the peak RSS across one call, in a fresh process "
                     f"holding U; one copy of U is {shape['u_mib']:.1f} MiB")
    return lines


def format_attack_report(result: dict) -> str:
    """The table of `attacks.run_attacks`: one row per case."""
    st, mach, info = result["settings"], result["machine"], result["backend_info"]
    lines = [
        "fedrobust benchmark: crafting an attack vs one aggregation with the rule it targets",
        (f"CPU: {mach['cpu_model']} ({mach['logical_cpus']} logical CPUs), SIMD {mach['simd']}; "
        f"threads: {st['threads']}"),
        _format_machine_load(mach),
        f"versions: fedrobust {info['version']}, numpy {info['numpy']}",
        (f"U: ({result['m']}, {result['d']}) {result['dtype']}, {result['u_mib']:.1f} MiB, 0.01 N(0,1) + common "
        f"drift; c = beta = {result['c']} (rows 0..{result['c'] - 1} compromised), seed {st['seed']}"),
        (f"timing: attack and aggregation interleaved, best of {st['repeats']} calls each after "
        f"{st['warmup']} warm-up; attacks with measure=False; read-once (column sum) "
        f"{_fmt_seconds(result['read_once']['best'])} s"),
        "ratio = attack seconds / aggregation seconds",
        "",
    ]
    header = f"{'case':<30}{'attack s':>10}{'aggregation s':>15}{'ratio':>8}"
    lines += [header, "-" * len(header)]
    for row in result["rows"]:
        lines.append(f"{row['case']:<30}{_fmt_seconds(row['attack_seconds']):>10}"
                     f"{_fmt_seconds(row['aggregation_seconds']):>15}{row['ratio']:>8.2f}")
    return "\n".join(lines)


def format_simulation_report(result: dict) -> str:
    """The table of `simulation.run`: the loop comparison, then seconds per round per worker count."""
    loop = result["loop"]
    lines = [
        f"simulation throughput ({result['threads']} torch threads; LR, batch 32, one local step, median)",
        (f"{loop['dataset']}, m = 100: batched {loop['batched_seconds'] * 1e3:.1f} ms/round "
        f"({loop['batched_rounds_per_second']:.0f} rounds/s), per-worker loop "
        f"{loop['loop_seconds'] * 1e3:.1f} ms/round: {loop['speedup']:.1f}x"),
        (f"DNN, one local step, {result['dnn_loop']['dataset']}, m = {result['dnn_loop']['workers']}: batched "
         f"{result['dnn_loop']['batched_seconds']:.3f} s, per-worker loop of torch models "
         f"{result['dnn_loop']['loop_seconds']:.3f} s: {result['dnn_loop']['speedup']:.2f}x"),
        (f"ResNet20, one local step, {' x '.join(map(str, result['resnet20_loop']['image']))} images, "
         f"m = {result['resnet20_loop']['workers']}: batched {result['resnet20_loop']['batched_seconds']:.3f} s, "
         f"per-worker loop of torch models {result['resnet20_loop']['loop_seconds']:.3f} s: "
         f"{result['resnet20_loop']['speedup']:.2f}x"),
        "synthetic (60,000 x 784, 10 classes):",
        f"{'workers':>8} {'s/round':>10} {'rounds/s':>9} {'s/round per 1000 workers':>25}",
    ]
    for row in result["scaling"]:
        lines.append(f"{row['workers']:>8} {row['seconds_per_round']:>10.4f} {row['rounds_per_second']:>9.1f} "
                     f"{row['seconds_per_round'] / row['workers'] * 1000:>25.4f}")
    lines += ["", "the split of a round (ms; each part timed alone, other = the round less the parts):",
              f"{'case':<22}" + "".join(f"{k:>10}" for k in SPLIT_PARTS)]
    cases = [(f"{loop['dataset']}, m = 100", loop["split"])] + [
        (f"synthetic, m = {row['workers']}", row["split"]) for row in result["scaling"]]
    for name, split in cases:
        lines.append(f"{name:<22}" + "".join(f"{split[k] * 1e3:>10.2f}" for k in SPLIT_PARTS))
    return "\n".join(lines)


SPLIT_PARTS = ("round", "sample", "train", "aggregate", "other")


def write_json(result: dict, path: str) -> None:
    """All numbers, settings and backend info as indented JSON."""
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
