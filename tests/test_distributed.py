"""One simulation on Ray actors (fedrobust.distributed, `fedrobust run --ray`): the same rounds
and models as the single process, bit for bit, with Ray started here with 2 CPUs."""
import json
import os

import numpy as np
import pytest

from fedrobust import cli
from fedrobust.config import Config
from fedrobust.distributed import OnRay
from fedrobust.simulation import Simulation

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    where = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("ray"))  # Ray's workers start in the driver's directory: not the source tree
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    os.chdir(where)


def _results(out):
    """The run's rounds (without wall times), final checkpoint model and best model."""
    with open(os.path.join(out, "rounds.jsonl")) as f:
        rounds = [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in f]
    with np.load(os.path.join(out, "checkpoint.npz")) as z:
        w = z["w"].tobytes()
    return rounds, w, np.load(os.path.join(out, "best_model.npy")).tobytes()


def _both(tmp_path, on_ray, **settings):
    results = []
    for name, where in (("local", None), ("ray", on_ray)):
        config = Config(**settings, out=str(tmp_path / name))
        Simulation(config, progress=False, on_ray=where).run()
        results.append(_results(config.out))
    return results


SMALL = dict(dataset="digits", workers=20, compromised=4, rounds=6, eval_every=2, batch_size=8)


@pytest.mark.parametrize("settings", [
    dict(rule="median", attack="trim", local_rounds=2),
    dict(rule="krum", attack="krum", sample=13),  # some actors get no selected worker in some rounds
    dict(rule="trimmed_mean", attack="labelflip", defense="union"),
])
def test_a_run_on_actors_equals_the_single_process_bit_for_bit(local_ray, tmp_path, settings):
    local, on_ray = _both(tmp_path, OnRay(None, actors=2), **SMALL, **settings)
    assert on_ray == local


def test_the_dnn_on_actors_equals_the_single_process(local_ray, tmp_path):
    settings = dict(dataset="breast_cancer", model="dnn", workers=10, compromised=2, rounds=2, eval_every=1,
                    rule="median", attack="trim")
    local, on_ray = _both(tmp_path, OnRay(None, actors=2), **settings)
    assert on_ray == local


def test_fedrobust_run_ray_writes_the_same_results(local_ray, tmp_path):
    common = ["run", "--rounds", "4", "--workers", "20", "--compromised", "4", "--quiet"]
    assert cli.main([*common, "--out", str(tmp_path / "local")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "ray"), "--ray", "--actors", "2"]) == 0
    assert _results(tmp_path / "ray") == _results(tmp_path / "local")


def test_more_actors_than_cpus_is_refused_before_a_directory_is_made(local_ray, tmp_path, capsys):
    out = tmp_path / "never"
    assert cli.main(["run", "--rounds", "2", "--out", str(out), "--ray", "--actors", "3"]) == 2
    assert "3 actors of 1 CPUs need 3 CPUs; the Ray cluster has 2" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["run", "--rounds", "2", "--out", str(out), "--actors", "2"]) == 2
    assert "--actors needs --ray" in capsys.readouterr().err


def test_a_run_on_ray_needs_the_cpu_device():
    with pytest.raises(ValueError, match="trains on the actors' CPUs"):
        Simulation(Config(device="cuda"), progress=False, on_ray=OnRay())
