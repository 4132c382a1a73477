"""The round loop: determinism, results on disk, checkpoints and resume, CLI errors."""
import json
import os

import numpy as np
import pytest
import torch

from fedrobust import cli, simulation
from fedrobust.simulation import Config, Simulation


def small_config(tmp_path, **overrides) -> Config:
    values = dict(dataset="digits", model="lr", rule="median", workers=20, compromised=4, q=0.5,
                  rounds=12, lr=0.5, batch_size=16, eval_every=2, checkpoint_every=4, seed=3,
                  out=str(tmp_path / "run"))
    values.update(overrides)
    return Config(**values)


def read_rounds(out):
    with open(os.path.join(out, "rounds.jsonl")) as f:
        return [json.loads(line) for line in f]


def numbers(rounds):
    return [(r["round"], r["test_error"], r["test_loss"]) for r in rounds]


def test_run_writes_config_rounds_and_summary(tmp_path):
    config = small_config(tmp_path)
    summary = Simulation(config, progress=False).run()
    saved = json.load(open(os.path.join(config.out, "config.json")))
    assert saved["config"]["seed"] == 3 and saved["config"]["rule"] == "median"
    assert saved["fedrobust_version"]
    rounds = read_rounds(config.out)
    assert [r["round"] for r in rounds] == [2, 4, 6, 8, 10, 12]
    # "seconds" is a wall-clock reading: its type and sign are checked, never its size
    assert all(0.0 <= r["test_error"] <= 1.0 and isinstance(r["seconds"], float) and r["seconds"] >= 0
               for r in rounds)
    on_disk = json.load(open(os.path.join(config.out, "summary.json")))
    for key in ("final_test_error", "best_test_error", "rounds", "rounds_per_second"):
        assert key in on_disk
    assert on_disk["rounds"] == 12
    assert on_disk["final_test_error"] == rounds[-1]["test_error"] == summary["final_test_error"]
    assert on_disk["best_test_error"] == min(r["test_error"] for r in rounds)
    best = np.load(os.path.join(config.out, on_disk["best_model"]))
    sim = Simulation(config, progress=False)
    error, _ = sim.evaluate(torch.from_numpy(best))
    assert error == on_disk["best_test_error"]


def test_same_seed_gives_the_same_numbers(tmp_path):
    a = Simulation(small_config(tmp_path, out=str(tmp_path / "a")), progress=False).run()
    b = Simulation(small_config(tmp_path, out=str(tmp_path / "b")), progress=False).run()
    assert numbers(read_rounds(tmp_path / "a")) == numbers(read_rounds(tmp_path / "b"))
    assert a["final_test_error"] == b["final_test_error"]
    Simulation(small_config(tmp_path, out=str(tmp_path / "c"), seed=4), progress=False).run()
    assert numbers(read_rounds(tmp_path / "c")) != numbers(read_rounds(tmp_path / "a"))


def test_resume_after_a_crash_ends_with_the_same_numbers(tmp_path, monkeypatch):
    reference = Simulation(small_config(tmp_path, out=str(tmp_path / "whole")), progress=False).run()

    interrupted = small_config(tmp_path, out=str(tmp_path / "cut"))
    real_step = Simulation.step

    def crashing_step(self, state):
        if state.round == 9:  # after the checkpoint of round 8
            raise RuntimeError("simulated crash")
        return real_step(self, state)

    monkeypatch.setattr(Simulation, "step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Simulation(interrupted, progress=False).run()
    monkeypatch.setattr(Simulation, "step", real_step)
    assert [r["round"] for r in read_rounds(interrupted.out)] == [2, 4, 6, 8]

    resumed = Simulation(interrupted, progress=False).run()
    assert numbers(read_rounds(interrupted.out)) == numbers(read_rounds(tmp_path / "whole"))
    assert resumed["final_test_error"] == reference["final_test_error"]
    assert resumed["best_round"] == reference["best_round"]
    np.testing.assert_array_equal(np.load(os.path.join(interrupted.out, "best_model.npy")),
                                  np.load(tmp_path / "whole" / "best_model.npy"))


def test_resume_refuses_a_directory_of_other_settings(tmp_path):
    config = small_config(tmp_path)
    Simulation(config, progress=False).run()
    with pytest.raises(ValueError, match=r"holds a run with other settings \(lr = 0.5 there, 0.1 here\)"):
        Simulation(small_config(tmp_path, lr=0.1), progress=False).run()


def test_a_crash_while_checkpointing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    config = small_config(tmp_path, rounds=4)
    sim = Simulation(config, progress=False)
    sim.run()
    before = simulation.load_checkpoint(config.out, config)

    def failing_replace(src, dst):
        raise OSError("disk full")

    state = sim.initial_state()
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError):
        simulation.save_checkpoint(config.out, state, config)
    monkeypatch.undo()
    after = simulation.load_checkpoint(config.out, config)
    assert after.round == before.round == 4
    assert torch.equal(after.w, before.w)


def test_batched_local_training_equals_a_per_worker_loop(tmp_path):
    sim = Simulation(small_config(tmp_path, local_rounds=2), progress=False)
    w = sim.initial_state().w
    workers = np.arange(sim.config.workers)
    batched = sim.local_updates(w, workers, np.random.default_rng(0))

    rng = np.random.default_rng(0)
    batches = [sim.sample_batches(workers, rng) for _ in range(2)]
    for i in workers:
        wi = w.clone()
        for x, y, weight in batches:
            _, g = sim.model.loss_and_grad(wi[None], x[i:i + 1], y[i:i + 1], weight[i:i + 1])
            wi = wi - sim.config.learning_rate() * g[0]
        torch.testing.assert_close(batched[i], wi - w, rtol=1e-5, atol=1e-6)


def test_minibatches_come_from_the_workers_own_data(tmp_path):
    sim = Simulation(small_config(tmp_path, batch_size=500), progress=False)
    workers = np.arange(sim.config.workers)
    x, y, weight = sim.sample_batches(workers, np.random.default_rng(1))
    for i in workers:
        n = len(sim.parts[i])
        assert weight[i].sum().item() == min(500, n)  # without replacement: all of a small set
        labels = sorted(y[i][weight[i] > 0].tolist())
        assert labels == sorted(sim.dataset.y_train[sim.parts[i]].tolist())


@pytest.mark.parametrize("flags, message", [
    (["--rule", "nope"], "rule"),
    (["--workers", "10", "--compromised", "5"], "compromised"),
    (["--q", "1.5"], "q"),
    (["--rule", "trimmed_mean", "--beta", "50", "--workers", "100"], "beta"),
    (["--rule", "krum", "--workers", "10", "--compromised", "4"], "Krum"),
    (["--dataset", "imagenet"], "dataset"),
    (["--lr", "-1"], "lr"),
    (["--sample", "0"], "sample"),
    (["--attack", "krum", "--compromised", "0"], "compromised"),
    (["--attack", "trim", "--attack-rule", "nope"], "attack_rule"),
    (["--attack", "krum", "--knowledge", "partial", "--compromised", "1"], "partial-knowledge Krum"),
    (["--attack", "trim", "--epsilon", "-1"], "epsilon"),
    (["--train-examples", "0"], "train_examples"),
    (["--train-examples", "5000"], "must be in [1, 1437] (the training examples of digits)"),
])
def test_bad_settings_fail_before_training_naming_the_setting(flags, message, capsys, tmp_path):
    status = cli.main(["run", "--out", str(tmp_path / "x"), "--quiet", *flags])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "x" / "rounds.jsonl").exists()


def test_train_examples_is_a_seeded_uniform_sample_of_the_training_set(tmp_path):
    full_run = Simulation(small_config(tmp_path, out=None), progress=False)
    full = full_run.dataset
    runs = {seed: Simulation(small_config(tmp_path, out=None, train_examples=300, seed=seed), progress=False)
            for seed in (3, 4)}
    sim = runs[3]
    assert len(sim.dataset.y_train) == 300 and sum(len(p) for p in sim.parts) == 300
    assert len(full.y_train) == 1437 and np.array_equal(sim.dataset.x_test, full.x_test)
    rows = {row.tobytes(): label for row, label in zip(full.x_train, full.y_train)}  # every example is one of them
    assert all(rows.get(row.tobytes()) == label for row, label in zip(sim.dataset.x_train, sim.dataset.y_train))
    again = Simulation(small_config(tmp_path, out=None, train_examples=300, seed=3), progress=False)
    assert np.array_equal(again.dataset.x_train, sim.dataset.x_train)
    assert not np.array_equal(runs[4].dataset.x_train, sim.dataset.x_train)
    # every class stays (300 uniform draws of 10 balanced classes); the sample shifts none of the other draws
    assert set(sim.dataset.y_train.tolist()) == set(range(10))
    assert np.array_equal(sim._init_seed.generate_state(4), full_run._init_seed.generate_state(4))


def test_toml_config_and_flags(tmp_path, capsys):
    toml = tmp_path / "run.toml"
    toml.write_text('dataset = "digits"\nrule = "trimmed_mean"\nworkers = 10\ncompromised = 2\n'
                    'rounds = 4\neval-every = 2\nlr = 0.3\n')
    out = tmp_path / "t"
    assert cli.main(["run", "--config", str(toml), "--rounds", "2", "--out", str(out), "--quiet"]) == 0
    saved = json.load(open(out / "config.json"))["config"]
    assert saved["rule"] == "trimmed_mean" and saved["rounds"] == 2 and saved["lr"] == 0.3
    assert "final test error" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 3\n")
    assert cli.main(["run", "--config", str(bad), "--quiet"]) == 2
    assert "colour" in capsys.readouterr().err


def test_cli_resume_and_plot(tmp_path):
    out = tmp_path / "r"
    assert cli.main(["run", "--workers", "10", "--compromised", "2", "--rounds", "4",
                     "--eval-every", "2", "--out", str(out), "--quiet"]) == 0
    assert cli.main(["run", "--resume", str(out), "--rounds", "6", "--quiet"]) == 0
    assert [r["round"] for r in read_rounds(out)] == [2, 4, 6]
    pytest.importorskip("matplotlib")
    assert cli.main(["plot", str(out)]) == 0
    assert (out / "test_error.png").stat().st_size > 1000


def test_short_mnist_lr_run_learns(tmp_path, mnist_dir):
    config = Config(dataset="mnist", model="lr", rule="median", workers=20, compromised=4, q=0.5,
                    rounds=30, lr=0.5, batch_size=32, eval_every=10, seed=0,
                    data_dir=str(mnist_dir), out=str(tmp_path / "mnist"))
    summary = Simulation(config, progress=False).run()
    assert summary["final_test_error"] < 0.35  # chance is 0.9


def test_per_worker_loop_baseline_computes_the_same_round_as_the_batched_step(tmp_path):
    from fedrobust.benchmarks import simulation as simbench

    sim = Simulation(small_config(tmp_path, out=None), progress=False)
    state = sim.initial_state()
    w0 = state.w.clone()
    state.rng = np.random.default_rng(7)
    sim.step(state)
    looped = simbench.per_worker_loop_round(sim, w0, np.random.default_rng(7))
    torch.testing.assert_close(looped, state.w, rtol=1e-5, atol=1e-6)


def test_defense_hook_keeps_rows_and_validates_on_100_held_out_test_examples(tmp_path):
    seen = {}

    def keep_all_but_first(updates, evaluate):
        seen["rows"] = updates.shape[0]
        seen["error"] = evaluate(np.zeros(updates.shape[1], np.float32))[0]
        return np.arange(1, updates.shape[0])

    config = small_config(tmp_path, rounds=2, eval_every=1)
    sim = Simulation(config, defense=keep_all_but_first, progress=False)
    assert len(sim.y_val) == 100 and len(sim.y_test) + 100 == len(sim.dataset.y_test)
    sim.run()
    assert seen["rows"] == config.workers and 0.0 <= seen["error"] <= 1.0
