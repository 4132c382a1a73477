"""Where a sweep's runs execute (fedrobust.executors): a local process pool and Ray tasks give
the runs of one process bit for bit (one thread per run in each); a failed run is reported
and the others finish; a sweep killed part-way resumes to the table of an uninterrupted one."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fedrobust import executors, sweep

SMALL = dict(dataset="digits", workers=20, compromised=4, rounds=3, eval_every=1, lr=0.5, batch_size=8)


def _grid(rounds=3, seeds=(0, 1)):
    cells = tuple(sweep.Cell(rule, attack, dict(rule=rule, attack=attack))
                  for rule in ("median", "trimmed_mean") for attack in ("none", "gaussian"))
    return sweep.Grid("g", cells, dict(SMALL, rounds=rounds), seeds=seeds)


def _runs(out):
    """Every run's rounds (without their wall times) and final model, by directory."""
    found = {}
    for cell in sorted(os.listdir(out)):
        for seed in sorted(os.listdir(os.path.join(out, cell))) if os.path.isdir(os.path.join(out, cell)) else ():
            where = os.path.join(out, cell, seed)
            with open(os.path.join(where, "rounds.jsonl")) as f:
                rounds = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f]
            with np.load(os.path.join(where, "checkpoint.npz")) as checkpoint:
                found[(cell, seed)] = (rounds, checkpoint["w"].tobytes())
    return found


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    table = sweep.run_grid(_grid(), str(out), executor=executors.Serial(False, threads=1), log=lambda s: None)
    return out, table


def _same_table(a, b):
    strip = lambda t: [{k: v for k, v in c.items() if k != "dirs"} for c in t["cells"]]  # noqa: E731
    return strip(a) == strip(b)


def test_a_process_pool_gives_the_runs_of_one_process_bit_for_bit(serial, tmp_path):
    logged = []
    table = sweep.run_grid(_grid(), str(tmp_path), executor=executors.Pool(jobs=2), log=logged.append)
    assert _same_table(table, serial[1]) and len(_runs(tmp_path)) == 8
    assert _runs(tmp_path) == _runs(serial[0])
    assert "[8 done, 0 running, 0 failed, 0 left; ETA 0 s]" in logged[-1]


def test_a_failed_run_is_reported_and_the_others_finish(tmp_path):
    stale = sweep.cell_dir(str(tmp_path), _grid().cells[1], 0)
    sweep.run_grid(sweep.Grid("g", (sweep.Cell("median", "none", dict(rule="median")),), dict(SMALL, q=0.1)),
                   str(tmp_path / "other"), progress=False, log=lambda s: None)
    os.makedirs(os.path.dirname(stale))
    os.rename(sweep.cell_dir(str(tmp_path / "other"), sweep.Cell("median", "none", {}), 0), stale)
    logged = []
    with pytest.raises(executors.RunsFailed, match="1 of 8 runs failed") as failed:
        sweep.run_grid(_grid(), str(tmp_path), executor=executors.Pool(jobs=2), log=logged.append)
    assert len(failed.value.failures) == 1 and "median / gaussian, seed 0" in failed.value.failures[0][0]
    assert "q = 0.1 there, 0.5 here" in failed.value.failures[0][1]
    assert [c["trials"] for c in failed.value.table["cells"]] == [2, 1, 2, 2]
    assert any("FAILED: " in line and "1 failed" in line for line in logged)


def test_ray_tasks_give_the_runs_of_one_process_bit_for_bit(serial, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)  # Ray's workers start in the driver's directory: not the source tree
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        table = sweep.run_grid(_grid(), str(tmp_path), executor=executors.Ray(), log=lambda s: None)
    finally:
        ray.shutdown()
    assert _same_table(table, serial[1]) and _runs(tmp_path) == _runs(serial[0])


def test_a_sweep_killed_part_way_resumes_to_the_table_of_an_uninterrupted_one(tmp_path):
    grid_file = tmp_path / "g.toml"
    grid_file.write_text('seeds = 2\nrows = ["rule"]\ncolumns = ["attack"]\n[settings]\n' + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in dict(SMALL, rounds=60).items())
        + 'rule = ["median", "trimmed_mean"]\nattack = ["none", "gaussian"]\n')
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fedrobust.cli", "sweep", str(grid_file), "--out", str(out), "--jobs", "2"]
    sweep_process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(f == "summary.json" for _, _, files in os.walk(out)
                                                  for f in files):
        time.sleep(0.1)
    os.killpg(sweep_process.pid, signal.SIGKILL)
    sweep_process.wait()
    finished = sum(f == "summary.json" for _, _, files in os.walk(out) for f in files)
    assert 1 <= finished < 8  # killed after the first run finished, before the last
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("done before") == finished
    whole = sweep.run_grid(sweep.read_grid(str(grid_file)), str(tmp_path / "whole"),
                           executor=executors.Serial(False, threads=1), log=lambda s: None)
    assert _same_table(json.loads((out / "table.json").read_text()), whole)
    assert _runs(out) == _runs(tmp_path / "whole")
