"""The native minibatch draw (csrc/cpu/minibatch.cpp) against its twin
(reference.minibatch_indices), and the simulation's use of it."""
import numpy as np
import pytest

from fedrobust import reference
from fedrobust._native import cpu
from fedrobust.simulation import Config, Simulation

from conftest import run_with_threads


def make_table(m, slots, rng, layout):
    """(m, slots) example ids, -1 = empty slot: 'trailing' as Simulation.local_index
    (each row's examples first), 'scattered' anywhere, 'full' none empty."""
    ids = rng.permutation(m * slots * 2)[: m * slots].reshape(m, slots).astype(np.int64)
    if layout == "trailing":
        sizes = rng.integers(0, slots + 1, m)
        ids[np.arange(slots)[None, :] >= sizes[:, None]] = -1
    elif layout == "scattered":
        ids[rng.random((m, slots)) < 0.3] = -1
    return ids


def make_keys(m, slots, rng, kind):
    keys = rng.random((m, slots))
    if kind == "ties":  # few distinct keys: the slot breaks the ties
        keys = np.round(keys * 3) / 3
    elif kind == "equal":
        keys[:] = 0.25
    elif kind == "infinite":  # the fallback path (no finite bucket width)
        keys[rng.random((m, slots)) < 0.2] = np.inf
        keys[rng.random((m, slots)) < 0.1] = -np.inf
    elif kind == "huge":  # max - min overflows
        keys = (keys - 0.5) * 3e308
    elif kind == "tiny":  # kBuckets / (max - min) overflows
        keys = keys * 1e-320
    elif kind == "clustered":  # nearly all keys in one bucket
        keys = np.where(rng.random((m, slots)) < 0.95, 0.5 + keys * 1e-9, keys)
    elif kind == "shifted":  # none below the uniform keys' threshold: the histogram finds the batch
        keys = keys + 10.0
    return keys


KINDS = ["uniform", "ties", "equal", "infinite", "huge", "tiny", "clustered", "shifted"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layout", ["trailing", "scattered", "full"])
@pytest.mark.parametrize("m, slots", [(1, 1), (3, 5), (20, 17), (7, 699), (200, 40)])
def test_draw_matches_reference_and_leaves_inputs_alone(m, slots, layout, kind):
    rng = np.random.default_rng(m * 1000 + slots)
    table, keys = make_table(m, slots, rng, layout), make_keys(m, slots, rng, kind)
    copies = table.copy(), keys.copy()
    for batch in sorted({0, 1, 5, slots // 2, slots - 1, slots, slots + 3} - {-1}):
        out = cpu.minibatch_indices(table, keys, batch)
        assert out.dtype == np.int64 and out.shape == (m, batch)
        np.testing.assert_array_equal(out, reference.minibatch_indices(table, keys, batch))
    np.testing.assert_array_equal(table, copies[0])
    np.testing.assert_array_equal(keys, copies[1])


def test_reference_takes_the_smallest_keys_ties_by_slot_in_slot_order():
    table = np.array([[10, 11, -1, 13, 14, 15]])
    keys = np.array([[0.5, 0.1, 0.0, 0.5, 0.3, 0.5]])
    # valid pairs by (key, slot): 11 (0.1), 14 (0.3), 10 (0.5, slot 0), 13 (0.5, slot 3), 15 (0.5, slot 5)
    np.testing.assert_array_equal(reference.minibatch_indices(table, keys, 3), [[10, 11, 14]])
    np.testing.assert_array_equal(reference.minibatch_indices(table, keys, 4), [[10, 11, 13, 14]])
    np.testing.assert_array_equal(reference.minibatch_indices(table, keys, 7), [[10, 11, 13, 14, 15, -1, -1]])


def test_same_result_for_1_2_and_3_threads(restore_threads):
    rng = np.random.default_rng(5)
    table, keys = make_table(3000, 120, rng, "trailing"), make_keys(3000, 120, rng, "uniform")
    results = [run_with_threads(n, cpu.minibatch_indices, table, keys, 32) for n in (1, 2, 3)]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("change, error, match", [
    (lambda a: a["keys"].__setitem__((1, 2), np.nan), ValueError, "keys: expected no NaN, got one at flat index 6"),
    (lambda a: a.update(keys=a["keys"][:, :3].copy()), ValueError, r"keys: expected the shape of table \(2, 4\)"),
    (lambda a: a.update(keys=a["keys"].astype(np.float32)), TypeError, "keys: expected dtype float64"),
    (lambda a: a.update(table=a["table"].astype(np.int32)), TypeError, "table: expected dtype int64"),
    (lambda a: a.update(table=a["table"][0]), ValueError, "table: expected a 2-D array"),
    (lambda a: a.update(table=np.asfortranarray(a["table"])), ValueError, "table: expected a C-contiguous"),
    (lambda a: a.update(batch=-1), ValueError, "batch must be >= 0, got -1"),
])
def test_bad_arguments_say_what_was_expected(change, error, match):
    args = dict(table=np.arange(8, dtype=np.int64).reshape(2, 4), keys=np.random.default_rng(0).random((2, 4)),
                batch=2)
    change(args)
    with pytest.raises(error, match=match):
        cpu.minibatch_indices(**args)


def test_simulation_draws_from_each_workers_own_examples():
    """sample_indices: the twin's draw on the generator's keys, each row a subset of the
    worker's local set without repeats, min(batch, local size) examples."""
    sim = Simulation(Config(dataset="digits", workers=30, compromised=0, batch_size=16, out=None), progress=False)
    workers = np.array([0, 3, 4, 17, 29])
    state = np.random.default_rng(11).bit_generator.state
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    drawn = sim.sample_indices(workers, rng)
    rng.bit_generator.state = state
    table = sim.local_index[workers]
    B = min(16, table.shape[1])
    np.testing.assert_array_equal(drawn, reference.minibatch_indices(table, rng.random(table.shape), B))
    for row, worker in zip(drawn, workers):
        chosen = row[row >= 0]
        assert chosen.size == min(B, sim.local_sizes[worker]) == np.unique(chosen).size
        assert np.isin(chosen, sim.parts[worker]).all()
