"""The attacks (fedrobust.attacks) and their kernels: crafting kernels against the float64
twins, the Krum attack's quadratic search against a brute-force Krum over the explicit pool,
the trim attack's intervals, determinism, and the simulation's attack wiring."""
import dataclasses
import json
import os

import numpy as np
import pytest

from fedrobust import aggregators, reference
from fedrobust._native import cpu
from fedrobust.attacks import AttackContext, AttackOptions, KrumPool, gaussian, krum_attack, trim_attack
from fedrobust.attacks import krum as krum_module
from fedrobust.simulation import Config, Simulation

from conftest import (
    DTYPES,
    HAVE_AVX2,
    LAYOUTS,
    as_layout,
    native_craft,
    native_krum_craft,
    run_with_simd,
    run_with_threads,
)


def updates(m, d, seed=0, dtype=np.float32, drift=0.002):
    rng = np.random.default_rng(seed)
    return (0.01 * rng.standard_normal((m, d)) + drift * rng.standard_normal(d)).astype(dtype)


def context(U, c, knowledge="full", rule="krum", **options):
    params = {"krum": {"c": c, "squared": options.get("krum_squared", True)}, "median": {},
              "trimmed_mean": {"beta": c}, "mean": {}, "bulyan": {"c": c, "squared": True}}[rule]
    w = (0.1 * np.random.default_rng(99).standard_normal(U.shape[1])).astype(U.dtype)
    return AttackContext(U, np.arange(c), w, rule, params, knowledge, np.random.default_rng(0), round=3,
                         seed=11, lr=0.1, options=AttackOptions(**options))


# ---------------------------------------------------------------------------
# Crafting kernels against the float64 twins
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["trim_full", "trim_full_model", "trim_partial", "gaussian"])
def test_craft_coordinates_matches_reference_bit_for_bit(mode, layout, dtype):
    rng = np.random.default_rng(1)
    U0 = updates(9, 300, dtype=dtype)
    U0[:, :4] = 0.0  # constant columns: sigma 0, direction 0
    U0[2, 10] = U0[3, 10]  # ties
    U = as_layout(U0, layout)
    before = U.copy()
    s = rng.integers(-1, 2, 300).astype(np.int8)
    base = (0.1 * rng.standard_normal(300)).astype(dtype)
    kwargs = {"trim_full": dict(direction=s), "trim_full_model": dict(direction=s, base=base),
              "trim_partial": {}, "gaussian": {}}[mode]
    kernel_mode = "trim_full" if mode.startswith("trim_full") else mode
    rows = [0, 2, 3, 5, 8]
    ids = np.array([40, 7, 3], dtype=np.int64)
    out, used = native_craft(U, rows, kernel_mode, ids, 5, 17, **kwargs)
    ref, ref_used = reference.craft_coordinates(U0, rows, kernel_mode, ids, 5, 17, **kwargs)
    assert out.dtype == dtype and out.shape == (3, 300)
    np.testing.assert_array_equal(out, ref.astype(dtype))  # Gaussian too: plain-arithmetic log and sincos
    np.testing.assert_array_equal(used, ref_used)
    np.testing.assert_array_equal(U, before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_norms_and_dots_match_reference(layout, dtype):
    U0 = updates(7, 257, dtype=dtype)
    U = as_layout(U0, layout)
    s = np.random.default_rng(2).integers(-1, 2, 257).astype(np.int8)
    norms, dots = cpu.norms_and_dots(U, s, [6, 1, 3])
    ref_norms, ref_dots = reference.norms_and_dots(U0, s, [6, 1, 3])
    np.testing.assert_allclose(norms, ref_norms, rtol=1e-13)
    np.testing.assert_allclose(dots, ref_dots, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("d", [1, 2, 7, 1000])
def test_krum_craft_matches_reference_and_stays_within_epsilon(d):
    s = np.random.default_rng(3).integers(-1, 2, d).astype(np.int8)
    ids = np.array([0, 5, 9, 12], dtype=np.int64)
    for dtype in DTYPES:
        out = native_krum_craft(s, 0.25, 0.01, 8, 4, ids, dtype)
        assert out.dtype == dtype
        expected = reference.krum_craft(s, 0.25, 0.01, 8, 4, ids, dtype)
        # The norm is summed in chunks of 4096 columns in the kernel, sequentially in the twin.
        np.testing.assert_allclose(out, expected.astype(dtype), rtol=1e-6 if dtype == np.float32 else 1e-12,
                                   atol=1e-9 if dtype == np.float32 else 1e-15)
        np.testing.assert_array_equal(out[0], (-0.25 * s).astype(dtype))  # the crafted model itself, exactly
        radii = np.linalg.norm(out[1:].astype(np.float64) - out[0], axis=1)
        assert np.all(radii <= 0.01 * (1 + 1e-5)) and np.all(radii > 0)


def test_crafting_is_bit_identical_for_1_2_and_3_threads(restore_threads):
    U = updates(30, 4000)  # every call above the one-thread size (csrc/cpu/threads.h)
    s = np.sign(U.sum(0)).astype(np.int8)
    ids = np.arange(5, dtype=np.int64)
    calls = [
        lambda: native_craft(U, list(range(5, 30)), "trim_full", ids, 1, 2, direction=s)[0],
        lambda: native_craft(U, list(range(5)), "trim_partial", ids, 1, 2)[0],
        lambda: native_craft(U, list(range(30)), "gaussian", ids, 1, 2)[0],
        lambda: native_krum_craft(s, 0.1, 0.01, 1, 2, ids, np.float32),
        lambda: np.stack(cpu.norms_and_dots(U, s, None)),
    ]
    for call in calls:
        results = [run_with_threads(n, call) for n in (1, 2, 3)]
        np.testing.assert_array_equal(results[1], results[0])
        np.testing.assert_array_equal(results[2], results[0])


def test_counter_log_and_normal_pairs_are_accurate():
    x = np.concatenate([[2.0 ** -53, 0.5, 1.0 - 2.0 ** -53, 1.0], np.random.default_rng(5).random(10000) + 2.0 ** -53])
    np.testing.assert_allclose(reference.counter_log(x), np.log(x), rtol=1e-11, atol=0)  # sampling accuracy
    assert reference.counter_log(np.array([1.0]))[0] == 0.0
    h = reference.counter_hash(1, 2, 3, np.arange(0, 20000, dtype=np.uint64))
    first, second = reference.normal_pair(h)
    r = np.sqrt(-2 * np.log(reference._uniform01_open_low(h)))
    angle = 2 * np.pi * reference.uniform01(reference.mix64(h))
    np.testing.assert_allclose(first, r * np.cos(angle), atol=1e-11)
    np.testing.assert_allclose(second, r * np.sin(angle), atol=1e-11)
    z = np.concatenate([first, second])
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.02


def test_counter_draws_depend_only_on_seed_round_worker_and_coordinate():
    U = updates(10, 50)
    s = np.ones(50, dtype=np.int8)
    a, _ = native_craft(U, list(range(3, 10)), "trim_full", np.array([3, 1, 2]), 9, 4, direction=s)
    b, _ = native_craft(U, list(range(3, 10)), "trim_full", np.array([2, 3]), 9, 4, direction=s)
    np.testing.assert_array_equal(a[0], b[1])  # worker 3 draws the same values wherever its row is
    np.testing.assert_array_equal(a[2], b[0])
    c, _ = native_craft(U, list(range(3, 10)), "trim_full", np.array([3]), 9, 5, direction=s)
    assert not np.array_equal(a[0], c[0])  # another round, other draws


@pytest.mark.parametrize("call, error, match", [
    (lambda U, s: native_craft(U, [0], "trim", np.array([0]), 0, 0), ValueError, "mode must be 'trim_full'"),
    (lambda U, s: native_craft(U, [0], "trim_full", np.array([0]), 0, 0), ValueError, "needs a direction"),
    (lambda U, s: native_craft(U, [0], "trim_full", np.array([0]), 0, 0, direction=s[:-1]),
     ValueError, "direction: expected 6 signs"),
    (lambda U, s: native_craft(U, [0], "trim_full", np.array([0]), 0, 0, direction=s * 2),
     ValueError, "values must be -1, 0 or 1"),
    (lambda U, s: native_craft(U, [0], "trim_full", np.array([0]), 0, 0, direction=s.astype(np.int64)),
     TypeError, "direction: expected dtype int8"),
    (lambda U, s: native_craft(U, [0], "trim_full", np.array([0]), 0, 0, direction=s, b=1.0),
     ValueError, "b must be > 1"),
    (lambda U, s: native_craft(U, [0], "trim_full", np.array([0]), 0, 0, direction=s, base=np.zeros(6)),
     TypeError, "base: expected dtype float32"),
    (lambda U, s: native_craft(U, [0], "trim_partial", np.array([0]), 0, 0, sigma_lo=4, sigma_hi=3),
     ValueError, "0 <= sigma_lo <= sigma_hi"),
    (lambda U, s: native_craft(U, [], "gaussian", np.array([0]), 0, 0),
     ValueError, "rows: expected at least one"),
    (lambda U, s: native_craft(U, [9], "gaussian", np.array([0]), 0, 0), ValueError, "out of range"),
    (lambda U, s: native_craft(U, [0], "gaussian", np.zeros(0, np.int64), 0, 0), ValueError, "out_ids"),
    (lambda U, s: native_krum_craft(s, 0.1, -1.0, 0, 0, [0], np.float32), ValueError, "eps"),
    (lambda U, s: native_krum_craft(s, np.inf, 0.0, 0, 0, [0], np.float32), ValueError, "lambda"),
    (lambda U, s: native_krum_craft(s, 0.1, 0.0, 0, 0, [0], np.int32), TypeError, "dtype"),
])
def test_kernel_arguments_are_checked(call, error, match):
    U = updates(4, 6)
    s = np.array([1, -1, 0, 1, 1, -1], dtype=np.int8)
    with pytest.raises(error, match=match):
        call(U, s)


# ---------------------------------------------------------------------------
# The Krum attack's search
# ---------------------------------------------------------------------------
def brute_force_krum_picks_crafted(U, benign, s, lam, copies, c_krum, squared, crafted_first_at):
    """Materialise the pool (copies of -lam s at their row positions + the benign rows) and run
    the reference Krum on it."""
    m = len(benign) + copies
    pool = np.empty((m, U.shape[1]))
    crafted_rows = list(range(crafted_first_at, crafted_first_at + copies))
    others = [r for r in range(m) if r not in crafted_rows]
    pool[crafted_rows] = -lam * s.astype(np.float64)
    pool[others] = U[benign].astype(np.float64)
    chosen = reference.krum_select(pool, c_krum, multi=1, squared=squared)[0]
    return chosen in crafted_rows


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_quadratic_krum_check_equals_brute_force_krum(seed, squared):
    m, c, d = 11, 3, 40
    U = updates(m, d, seed=seed)
    benign = np.arange(c, m)
    s = np.sign(np.random.default_rng(seed).standard_normal(d)).astype(np.int8)
    sq = reference.pairwise_sq_distances(U[benign])
    norms, dots = reference.norms_and_dots(U[benign], s)
    pool = KrumPool.build(sq, norms, dots, float(np.count_nonzero(s)), benign, squared)
    lam0 = pool.theorem1_bound(m - c - 2, m - 2 * c - 1)
    for lam in lam0 * np.geomspace(4.0, 1e-4, 25):
        expected = brute_force_krum_picks_crafted(U, benign, s, lam, c, c, squared, 0)
        assert pool.crafted_wins(lam, c, m - c - 2, 0) == expected, lam


def test_quadratic_distances_equal_direct_ones():
    U = updates(8, 500, dtype=np.float64)
    s = np.random.default_rng(4).integers(-1, 2, 500).astype(np.int8)
    norms, dots = cpu.norms_and_dots(U, s, None)
    pool = KrumPool.build(reference.pairwise_sq_distances(U), norms, dots, float(np.count_nonzero(s)),
                          np.arange(8), True)
    for lam in (0.0, 1e-4, 0.03, 2.0):
        direct = ((U + lam * s) ** 2).sum(axis=1)
        np.testing.assert_allclose(pool.crafted_sq_distances(lam), direct, rtol=1e-12, atol=1e-18)


def test_golden_full_knowledge_case_m7_c2():
    """m = 7, c = 2: the Theorem 1 bound by its formula, the halving sequence, the chosen lambda
    (the first in the sequence for which a brute-force Krum over the pool picks a copy)."""
    rng = np.random.default_rng(7)
    U = (0.05 * rng.standard_normal((7, 6)) + 0.02).astype(np.float64)
    ctx = context(U, 2, rule="krum", krum_squared=False, epsilon=0.0, direction="rule")
    benign = np.arange(2, 7)
    s = np.sign(reference.krum(U, 2, squared=False)).astype(np.int8)  # direction "rule": Krum's output
    # Theorem 1 with plain distances: m - c - 2 = 3 benign neighbours, m - 2c - 1 = 2.
    D = np.sqrt(reference.pairwise_sq_distances(U[benign]))
    nearest = [np.sort(np.delete(D[i], i))[:3].sum() for i in range(5)]
    lam0 = min(nearest) / (2 * np.sqrt(6)) + np.linalg.norm(U[benign], axis=1).max() / np.sqrt(6)
    sequence = [lam0 / 2 ** k for k in range(40) if lam0 / 2 ** k >= 1e-5]
    wins = [brute_force_krum_picks_crafted(U, benign, s, lam, 2, 2, False, 0) for lam in sequence]
    rows = krum_attack(ctx)
    assert ctx.metrics["lambda_start"] == pytest.approx(lam0, rel=1e-12)
    if any(wins):
        first = wins.index(True)
        assert ctx.metrics["found"] and ctx.metrics["probes"] == first + 1
        assert ctx.metrics["lambda"] == pytest.approx(sequence[first], rel=1e-12)
    else:
        assert not ctx.metrics["found"] and ctx.metrics["probes"] == len(sequence)
    np.testing.assert_allclose(rows, np.tile(-ctx.metrics["lambda"] * s, (2, 1)), rtol=1e-12)


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_after_a_reported_success_the_server_krum_selects_a_crafted_row(seed, squared):
    m, c = 25, 5
    U = updates(m, 300, seed=seed)
    ctx = context(U, c, rule="krum", krum_squared=squared, epsilon=0.0)
    sent = U.copy()
    sent[:c] = krum_attack(ctx)
    assert ctx.metrics["found"], ctx.metrics
    chosen = aggregators.krum_select(sent, c, squared=squared)[0]
    assert chosen < c


@pytest.mark.parametrize("seed", range(4))
def test_partial_knowledge_search_matches_brute_force_on_the_compromised_pool(seed):
    m, c = 30, 6
    U = updates(m, 200, seed=seed)
    ctx = context(U, c, knowledge="partial", epsilon=0.0)
    rows = krum_attack(ctx)
    s = np.sign(U[:c].astype(np.float64).mean(axis=0)).astype(np.int8)
    k, lam = ctx.metrics["copies"], ctx.metrics["lambda"]
    np.testing.assert_allclose(rows[0], -lam * s, rtol=1e-6)
    assert ctx.metrics["found"]
    # Krum over k copies (first) and the c compromised models, Byzantine count k, picks a copy;
    # with fewer copies no lambda of the halving sequence would have worked.
    assert brute_force_krum_picks_crafted(U, np.arange(c), s, lam, k, k, True, 0)
    assert 0.0 <= ctx.metrics["direction_agreement"] <= 1.0


def test_halving_search_probes_the_start_and_stops_below_the_threshold():
    probed = []
    lam, found, probes = krum_module.halving_search(lambda x: probed.append(x) or False, 1.0, 0.1)
    assert probed == [1.0, 0.5, 0.25, 0.125] and not found and lam == 0.125 and probes == 4
    lam, found, probes = krum_module.halving_search(lambda x: x < 0.3, 1.0, 0.1)
    assert found and lam == 0.25 and probes == 3


@pytest.mark.parametrize("on_failure", ["benign", "last"])
def test_on_failure_sends_the_genuine_updates_or_the_last_crafted_model(on_failure, monkeypatch):
    monkeypatch.setattr(KrumPool, "crafted_wins", lambda self, *args: False)  # no lambda passes
    U = updates(12, 50)
    ctx = context(U, 3, on_failure=on_failure, epsilon=0.0)
    rows = krum_attack(ctx)
    assert not ctx.metrics["found"] and ctx.metrics["lambda"] < 2e-5
    if on_failure == "benign":
        np.testing.assert_array_equal(rows, U[:3])
        assert ctx.metrics["sent"] == "benign"
    else:  # the default direction: the sign of the sum of all m updates
        s = np.sign(U.astype(np.float64).sum(0)).astype(np.float32)
        np.testing.assert_array_equal(rows, np.tile(np.float32(-ctx.metrics["lambda"]) * s, (3, 1)))


def test_deviation_goal_subtracts_lambda_from_every_coordinate():
    U = updates(20, 100)
    ctx = context(U, 4, goal="deviation", epsilon=0.0)
    rows = krum_attack(ctx)
    np.testing.assert_allclose(rows, -ctx.metrics["lambda"] * np.ones((4, 100)), rtol=1e-6)


# ---------------------------------------------------------------------------
# The trim attack and Gaussian
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("direction", ["sum", "rule"])
@pytest.mark.parametrize("reference_point", ["model", "update"])
@pytest.mark.parametrize("rule", ["median", "trimmed_mean"])
def test_full_trim_values_lie_beyond_the_benign_extremes_inside_the_b_interval(rule, reference_point, direction):
    """The default direction is the sign of the sum of all m updates; "rule" is the sign of the
    rule's before-attack output (SPEC 13 item 4)."""
    U = updates(40, 3000, dtype=np.float64)
    U[:, :50] = 0.0  # coordinates that do not move: s = 0
    options = {} if direction == "sum" else {"direction": direction}
    ctx = context(U, 8, rule=rule, trim_reference=reference_point, **options)
    rows = trim_attack(ctx)
    moved = U.sum(0) if direction == "sum" else aggregators.get(rule, **ctx.rule_params)(U)
    s = np.sign(moved).astype(np.int8)
    offset = ctx.global_model if reference_point == "model" else np.zeros(3000)
    benign = U[8:]
    mx, mn = benign.max(0) + offset, benign.min(0) + offset
    values = rows + offset
    up, down, still = s < 0, s > 0, s == 0
    assert np.all(values[:, up] >= mx[up]) and np.all(values[:, down] <= mn[down])
    upper = np.where(mx > 0, 2 * mx, mx / 2)
    lower = np.where(mn > 0, mn / 2, 2 * mn)
    assert np.all(values[:, up] <= upper[up]) and np.all(values[:, down] >= lower[down])
    assert np.all(rows[:, still] == 0.0)
    assert ctx.metrics["beyond_extremes"] > 0.99


def test_partial_trim_values_lie_in_mean_plus_minus_3_to_4_std():
    U = updates(40, 3000, dtype=np.float64)
    ctx = context(U, 10, knowledge="partial", rule="median")
    rows = trim_attack(ctx)
    mu, sd = U[:10].mean(0), U[:10].std(0)
    s = np.sign(mu)
    up, down = s < 0, s > 0
    eps = 1e-12
    assert np.all(rows[:, up] >= (mu + 3 * sd)[up] - eps) and np.all(rows[:, up] <= (mu + 4 * sd)[up] + eps)
    assert np.all(rows[:, down] >= (mu - 4 * sd)[down] - eps) and np.all(rows[:, down] <= (mu - 3 * sd)[down] + eps)
    assert 0.0 <= ctx.metrics["beyond_extremes"] <= 1.0 and 0.0 <= ctx.metrics["direction_agreement"] <= 1.0


def test_gaussian_attack_draws_from_the_fitted_per_coordinate_gaussian():
    U = updates(50, 4, dtype=np.float64)
    ctx = context(U, 2, rule="mean")
    ctx.compromised = np.arange(2)
    many = AttackContext(U, np.arange(50), ctx.global_model, "mean", {}, "full", ctx.rng, 0, seed=3)
    # 50 "workers" x 4 coordinates drawn over 200 rounds: sample mean and std near the fit.
    draws = np.concatenate([gaussian(dataclasses.replace(many, round=r)) for r in range(200)])
    np.testing.assert_allclose(draws.mean(0), U.mean(0), atol=4 * U.std(0).max() / np.sqrt(draws.shape[0]))
    np.testing.assert_allclose(draws.std(0), U.std(0), rtol=0.05)


def test_trim_deviation_goal_with_partial_knowledge_is_refused():
    ctx = context(updates(20, 10), 4, knowledge="partial", rule="median", goal="deviation")
    with pytest.raises(ValueError, match="deviation goal needs full knowledge"):
        trim_attack(ctx)


# ---------------------------------------------------------------------------
# In the simulation
# ---------------------------------------------------------------------------
def sim_config(tmp_path, **overrides):
    values = dict(dataset="digits", model="lr", rule="median", workers=20, compromised=4, q=0.5, rounds=6,
                  lr=0.5, batch_size=16, eval_every=2, checkpoint_every=3, seed=3, out=str(tmp_path / "run"))
    values.update(overrides)
    return Config(**values)


def test_label_flipping_touches_only_the_compromised_workers_labels(tmp_path):
    sim = Simulation(sim_config(tmp_path, attack="labelflip"), progress=False)
    clean = sim.dataset.y_train
    flipped = sim.y_train.numpy()
    touched = np.flatnonzero(flipped != clean)
    compromised = np.concatenate([sim.parts[w] for w in range(4)])
    assert set(touched) <= set(compromised)
    np.testing.assert_array_equal(flipped[compromised], 9 - clean[compromised])


@pytest.mark.parametrize("attack, knowledge, rule, keys", [
    ("krum", "full", "krum", {"lambda", "found", "krum_selected_compromised"}),
    ("krum", "partial", "krum", {"lambda", "copies", "direction_agreement"}),
    ("trim", "full", "trimmed_mean", {"beyond_extremes"}),
    ("trim", "partial", "median", {"beyond_extremes", "direction_agreement"}),
    ("gaussian", "full", "bulyan", {"bulyan_selected_compromised"}),
    ("labelflip", "full", "krum", {"krum_selected_compromised"}),
])
def test_round_metrics_reach_rounds_jsonl_and_the_summary(tmp_path, attack, knowledge, rule, keys):
    config = sim_config(tmp_path, attack=attack, knowledge=knowledge, rule=rule,
                        workers=23 if rule == "bulyan" else 20, compromised=5 if rule == "bulyan" else 4)
    summary = Simulation(config, progress=False).run()
    with open(os.path.join(config.out, "rounds.jsonl")) as f:
        lines = [json.loads(ln) for ln in f]
    per_round = [r for ln in lines for r in ln["attack"]]
    assert [r["round"] for r in per_round] == list(range(1, 7))
    assert all(r["attacked"] and keys <= set(r) for r in per_round)
    assert summary["attack"]["rounds_attacked"] == 6
    assert json.load(open(os.path.join(config.out, "config.json")))["attack"]["name"] == attack


def test_attack_fraction_attacks_a_seeded_random_subset_of_rounds(tmp_path):
    config = sim_config(tmp_path, attack="trim", rounds=40, eval_every=40, attack_fraction=0.3)
    Simulation(config, progress=False).run()
    with open(os.path.join(config.out, "rounds.jsonl")) as f:
        attacked = [r["attacked"] for ln in f for r in json.loads(ln)["attack"]]
    assert len(attacked) == 40 and 4 <= sum(attacked) <= 20
    again = Simulation(sim_config(tmp_path, out=str(tmp_path / "b"), attack="trim", rounds=40, eval_every=40,
                                  attack_fraction=0.3), progress=False)
    assert [again.attacked(r) for r in range(40)] == attacked


def test_attacked_run_resumes_with_the_same_numbers_and_metrics(tmp_path, monkeypatch):
    whole = sim_config(tmp_path, out=str(tmp_path / "whole"), attack="krum", rule="krum", rounds=8, eval_every=4,
                       checkpoint_every=3)
    Simulation(whole, progress=False).run()
    cut = dataclasses.replace(whole, out=str(tmp_path / "cut"))
    real_step = Simulation.step

    def crashing_step(self, state):
        if state.round == 5:  # after the checkpoint of round 3, with round 4's line written
            raise RuntimeError("simulated crash")
        return real_step(self, state)

    monkeypatch.setattr(Simulation, "step", crashing_step)
    with pytest.raises(RuntimeError):
        Simulation(cut, progress=False).run()
    monkeypatch.setattr(Simulation, "step", real_step)
    Simulation(cut, progress=False).run()
    with open(os.path.join(whole.out, "rounds.jsonl")) as a, open(os.path.join(cut.out, "rounds.jsonl")) as b:
        strip = lambda ln: {k: v for k, v in json.loads(ln).items() if k != "seconds"}  # noqa: E731
        assert [strip(x) for x in a] == [strip(y) for y in b]


@pytest.mark.parametrize("overrides, message", [
    (dict(attack="krum", compromised=0), "'compromised' must be >= 1 for attack 'krum'"),
    (dict(attack="krum", knowledge="partial", compromised=1), "partial-knowledge Krum attack"),
    (dict(attack="trim", attack_rule="nope"), "'attack_rule' must be one of"),
    (dict(attack="trim", knowledge="partial", goal="deviation"), "'deviation' with the trim attack"),
    (dict(attack="trim", attack_fraction=1.5), "'attack_fraction' must be in [0, 1]"),
    (dict(attack="krum", epsilon=-0.1), "'epsilon' must be >= 0"),
    (dict(attack="trim", trim_b=1.0), "'trim_b' must be > 1"),
    (dict(attack="trim", goal="maximal"), "'goal' must be one of"),
    (dict(attack="trim", direction="up"), "'direction' must be one of"),
    (dict(attack="krum", on_failure="retry"), "'on_failure' must be one of"),
    (dict(attack="trim", trim_reference="zero"), "'trim_reference' must be one of"),
    (dict(attack="backdoor"), "'attack' must be one of"),
    (dict(attack="labelflip", attack_fraction=0.5), "must be 1 for labelflip"),
    (dict(attack="krum", attack_rule="median", workers=20, compromised=9), "Krum attack's simulated Krum"),
    (dict(attack="krum", workers=20, compromised=9),
     "does not fit attack_rule 'krum' with 20 workers per round: Krum needs m > 2c + 2 workers"),
    (dict(attack="trim", attack_rule="bulyan", workers=20, compromised=5),
     "does not fit attack_rule 'bulyan' with 20 workers per round: Bulyan needs m >= 4c + 3 workers"),
])
def test_impossible_attack_settings_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(ValueError) as excinfo:
        Simulation(sim_config(tmp_path, **overrides), progress=False)
    assert message in str(excinfo.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("squared", [True, False])
@pytest.mark.parametrize("seed", range(5))
def test_krum_choice_from_distances_equals_the_kernels_selection(seed, squared):
    U = updates(15, 64, seed=seed)
    U[3] = U[7]  # duplicates make ties
    U[11] = U[7]
    sq = cpu.sq_distances(U, None)
    assert krum_module.krum_choice(sq, 4, squared) == aggregators.krum_select(U, 4, squared=squared)[0]


@pytest.mark.skipif(not HAVE_AVX2, reason="the CPU lacks AVX2")
def test_normals_are_the_same_bits_at_the_generic_and_avx2_levels(restore_simd):
    U = updates(12, 1003)
    s = np.random.default_rng(6).integers(-1, 2, 1003).astype(np.int8)
    ids = np.array([4, 9, 2], dtype=np.int64)
    calls = [lambda: native_craft(U, list(range(12)), "gaussian", ids, 3, 8)[0],
             lambda: native_krum_craft(s, 0.2, 0.01, 3, 8, ids, np.float64)]
    for call in calls:
        np.testing.assert_array_equal(run_with_simd("generic", call), run_with_simd("avx2", call))
