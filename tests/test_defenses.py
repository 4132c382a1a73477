"""The defenses (fedrobust.defenses): leave-one-out aggregation against the rule recomputed m
times by the float64 twin, the removal rules (the c largest impacts, ties to the lower index,
Union as the set union), parameter clamping, batched evaluation, and the simulation's
defended rounds (metrics, resume, settings)."""
import json
import os

import numpy as np
import pytest
import torch

from fedrobust import aggregators, defenses, reference
from fedrobust.simulation import Config, Simulation

from conftest import assert_identical, make_case

RULES = [("mean", {}), ("median", {}), ("trimmed_mean", {"beta": 2}), ("krum", {"c": 2, "squared": True}),
         ("krum", {"c": 3, "squared": False}), ("bulyan", {"c": 1, "squared": True})]


# ---------------------------------------------------------------------------
# Leave-one-out aggregation
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("rule, params", RULES)
@pytest.mark.parametrize("kind", ["normal", "ties", "duplicates"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leave_one_out_equals_the_rule_recomputed_m_times(rule, params, kind, dtype):
    U = make_case(kind, 9, 37, dtype, seed=4)
    before = U.copy()
    A, B = defenses.leave_one_out(torch.from_numpy(U), rule, params)
    assert_identical(A.numpy(), aggregators.get(rule, **params)(U), f"{rule} A")
    expected = reference.leave_one_out(U, rule, **params).astype(dtype)
    if rule in ("mean", "median", "trimmed_mean") or dtype == np.float64:
        assert_identical(B.numpy(), expected, f"{rule} B")
    else:  # Krum / Bulyan in float32: the same rows chosen (distances are float64 in both)
        np.testing.assert_allclose(B.numpy(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(U, before)


@pytest.mark.parametrize("rule, params", RULES)
def test_leave_one_out_gives_the_same_bits_on_every_backend(rule, params, array_kind):
    """Every torch kind (the CUDA backend emulated on CPU tensors here; on a GPU, CUDA tensors)
    gives the CPU's numbers, on the input's device."""
    if not array_kind.name.startswith(("torch", "emulated")):
        pytest.skip("defenses take the round's torch tensor")
    U = make_case("ties", 12, 40, np.float32, seed=2)
    A0, B0 = defenses.leave_one_out(torch.from_numpy(U), rule, params)
    V = array_kind.put(U)
    A, B = defenses.leave_one_out(V, rule, params)
    assert B.device == V.device
    assert_identical(array_kind.host(A), A0.numpy(), f"{rule} A")
    assert_identical(array_kind.host(B), B0.numpy(), f"{rule} B")


@pytest.mark.parametrize("rule, params", [("median", {}), ("trimmed_mean", {"beta": 2}), ("krum", {"c": 2}),
                                          ("bulyan", {"c": 1})])
def test_leave_one_out_with_nonfinite_rows_matches_the_twin(rule, params):
    U = make_case("normal", 11, 20, np.float64, seed=1)
    U[3] = np.nan
    U[7, 4] = np.inf
    B = defenses.leave_one_out(torch.from_numpy(U), rule, params)[1].numpy()
    assert_identical(B, reference.leave_one_out(U, rule, **params), rule)


@pytest.mark.parametrize("m", [2, 9, 100, 129])
def test_the_leave_one_out_mean_from_the_sum_has_the_rule_bits_where_sums_are_exact_and_elsewhere(m):
    """Float32 columns of one size, of sizes spanning 2^10 to 2^40, zeros and subnormals beside 1
    (the mean refuses non-finite updates): the mean without row i from the column sum where
    every subset sum is exact in double, the rule recomputed elsewhere; both give the rule's bits."""
    rng = np.random.default_rng(m)
    cols = [rng.standard_normal(m) * 2.0 ** rng.integers(-20, 20, m) for _ in range(12)]
    cols += [(1 + rng.random(m)) * 2.0 ** (s * (np.arange(m) % 2)) for s in (10, 20, 21, 22, 23, 30, 40)]
    cols += [np.zeros(m), np.where(np.arange(m) % 2, 1.0, 1e-40)]
    for s in range(16, 34):  # +-B pairs that cancel beside one value 2^-s B: inexact sums show
        c = (1 + rng.random(m)) * np.where(np.arange(m) % 2, -1, 1)
        c[1::2] = -c[0::2][: m // 2]
        c[-1] = (1 + rng.random()) * 2.0 ** -s
        cols.append(rng.permutation(c))
    U = np.stack(cols, axis=1).astype(np.float32)
    exact = defenses._columns_with_exact_sums(U)
    assert exact.any() and not exact.all()
    B = defenses.leave_one_out(torch.from_numpy(U), "mean", {})[1].numpy()
    expected = reference.leave_one_out(U, "mean").astype(np.float32)
    assert_identical(B, expected, "mean")
    X = U.astype(np.float64)
    if m > 2:  # the data can tell: the shortcut taken everywhere would differ somewhere
        assert np.any(((X.sum(0) - X) / (m - 1)).astype(np.float32) != expected)


@pytest.mark.parametrize("rule, params, n, expected", [
    ("trimmed_mean", {"beta": 4}, 9, {"beta": 4}), ("trimmed_mean", {"beta": 4}, 8, {"beta": 3}),
    ("krum", {"c": 3, "squared": True}, 8, {"c": 2, "squared": True}),
    ("bulyan", {"c": 2, "squared": True}, 10, {"c": 1, "squared": True}), ("median", {}, 1, {}),
])
def test_parameters_are_clamped_to_the_largest_valid_value(rule, params, n, expected):
    assert aggregators.rule(rule).clamped(n, **params) == expected == reference.clamped_params(rule, n, params)


def test_a_rule_that_cannot_run_at_all_says_so():
    with pytest.raises(ValueError, match="rule 'krum' cannot run on 2 rows"):
        aggregators.rule("krum").clamped(2, c=0)


# ---------------------------------------------------------------------------
# What is removed
# ---------------------------------------------------------------------------
def test_ties_in_impact_remove_the_lower_index_first():
    np.testing.assert_array_equal(defenses.largest(np.array([0.1, 0.5, 0.5, 0.2, 0.5]), 2), [1, 2])
    np.testing.assert_array_equal(defenses.largest(np.zeros(6), 3), [0, 1, 2])


def a_round(m=12, d=30, c=3, harmful=(2, 7, 9)):
    """Updates around a useful direction; the `harmful` rows a large constant; a linear evaluator
    whose error and loss grow with the distance of the model from the useful direction."""
    rng = np.random.default_rng(0)
    good = np.ones(d, np.float32)
    U = (good + 0.1 * rng.standard_normal((m, d))).astype(np.float32)
    U[list(harmful)] = 50.0
    w = torch.zeros(d)

    def evaluate(models):
        gap = (models - torch.from_numpy(good)).norm(dim=1).double().numpy()
        return gap / (1 + gap), np.log1p(gap)

    return torch.from_numpy(U), w, c, evaluate


@pytest.mark.parametrize("name", ["err", "lfr", "union"])
@pytest.mark.parametrize("rule, params", [("mean", {}), ("trimmed_mean", {"beta": 1})])
def test_an_obviously_harmful_update_is_removed(name, rule, params):
    U, w, c, evaluate = a_round(harmful=(5,))
    result = defenses.defend(name, U, w, rule, params, c, evaluate)
    assert 5 in result.removed
    assert result.error_impact[5] == result.error_impact.max()
    np.testing.assert_array_equal(np.sort(np.concatenate([result.kept, result.removed])), np.arange(12))


def test_err_and_lfr_remove_c_and_union_their_union():
    U, w, c, evaluate = a_round()
    err = defenses.defend("err", U, w, "mean", {}, c, evaluate)
    lfr = defenses.defend("lfr", U, w, "mean", {}, c, evaluate)
    union = defenses.defend("union", U, w, "mean", {}, c, evaluate)
    assert err.removed.size == lfr.removed.size == c
    np.testing.assert_array_equal(union.removed, np.union1d(err.removed, lfr.removed))
    assert c <= union.removed.size <= 2 * c
    np.testing.assert_array_equal(err.removed, [2, 7, 9])


def test_impacts_are_the_aggregates_evaluated():
    U, w, c, evaluate = a_round()
    err_impact, loss_impact = defenses.impacts(U, w, "median", {}, evaluate)
    A, B = defenses.leave_one_out(U, "median", {})
    errors, losses = evaluate(w + torch.cat([A[None], B]))
    np.testing.assert_array_equal(err_impact, errors[0] - errors[1:])
    np.testing.assert_array_equal(loss_impact, losses[0] - losses[1:])


@pytest.mark.parametrize("impact, c, expected", [
    ([3.0, 1.0, 2.0, 0.0], 2, 0),        # no tie at the 2nd largest
    ([0.0, 0.0, 0.0, 0.0], 2, 2),        # all tied: both places by index
    ([5.0, 1.0, 1.0, 1.0, 0.0], 2, 1),   # one on its impact, one of three tied by index
    ([5.0, 1.0, 1.0, 0.0], 3, 0),        # the tied rows fill the places exactly
    ([1.0, 2.0], 0, 0),
    ([np.nan, 2.0, np.nan, 1.0], 3, 1),   # NaN ranks last (as in largest): one of two NaNs by index
])
def test_the_removals_the_tie_rule_decided_are_counted(impact, c, expected):
    impact = np.array(impact)
    assert defenses.decided_by_index(impact, c) == expected
    assert defenses.largest(impact, c).size == c
    if c == 3 and np.isnan(impact).any():
        np.testing.assert_array_equal(defenses.largest(impact, c), [0, 1, 3])


def test_a_round_with_all_error_impacts_tied_says_err_chose_by_index():
    U, w, c, _ = a_round()

    def flat_errors(models):  # every candidate model has the same error rate, losses differ
        return np.zeros(models.shape[0]), models.double().pow(2).sum(dim=1).numpy()

    result = defenses.defend("union", U, w, "mean", {}, c, flat_errors)
    assert result.by_index == {"err": c, "lfr": 0}
    np.testing.assert_array_equal(defenses.largest(result.error_impact, c), np.arange(c))


@pytest.mark.parametrize("name, c, error", [("bogus", 1, "defense must be one of"), ("err", 12, "c must be in")])
def test_bad_defense_arguments_are_named(name, c, error):
    U, w, _, evaluate = a_round()
    with pytest.raises(ValueError, match=error):
        defenses.defend(name, U, w, "mean", {}, c, evaluate)


# ---------------------------------------------------------------------------
# Batched evaluation of the candidate models
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("model_name, shape", [("lr", (1, 8, 8)), ("dnn", (1, 12, 12))])
def test_evaluate_many_equals_one_evaluation_per_model(model_name, shape):
    from fedrobust import models

    model = models.get(model_name, shape, 10)
    rng = np.random.default_rng(0)
    W = torch.stack([model.init(np.random.default_rng(s)) for s in range(5)])
    x = torch.from_numpy(rng.random((70, *shape), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, 70))
    errors, losses = model.evaluate_many(W, x, y, batch_size=32)
    for k in range(5):
        e, loss = model.evaluate(W[k], x, y)
        assert errors[k] == e
        assert losses[k] == pytest.approx(loss, rel=1e-5)


# ---------------------------------------------------------------------------
# Defended simulation rounds
# ---------------------------------------------------------------------------
def defended_config(out, **overrides):
    values = dict(dataset="digits", model="lr", rule="median", workers=20, compromised=4, rounds=6, lr=0.5,
                  batch_size=16, eval_every=2, checkpoint_every=2, seed=3, attack="trim", knowledge="partial",
                  defense="union", out=str(out))
    values.update(overrides)
    return Config(**values)


def test_a_defended_run_records_what_was_removed(tmp_path):
    out = tmp_path / "d"
    summary = Simulation(defended_config(out), progress=False).run()
    lines = [json.loads(line) for line in open(out / "rounds.jsonl")]
    entries = [r for line in lines for r in line["defense"]]
    assert [r["round"] for r in entries] == [1, 2, 3, 4, 5, 6]
    for r in entries:
        assert 4 <= len(r["removed"]) <= 8 and r["removed"] == sorted(r["removed"])
        assert r["removed_compromised"] + r["removed_benign"] == len(r["removed"]) and r["compromised"] == 4
        assert r["removed_compromised"] == sum(worker < 4 for worker in r["removed"])
        assert set(r["decided_by_index"]) == {"err", "lfr"} and all(0 <= k <= 4 for k in r["decided_by_index"].values())
    hit = sum(r["removed_compromised"] for r in entries)
    assert summary["defense"]["detection_rate"] == hit / 24
    assert summary["defense"]["decided_by_index_mean"] == {
        k: np.mean([r["decided_by_index"][k] for r in entries]) for k in ("err", "lfr")}
    assert summary["defense"]["rounds"] == 6
    assert json.load(open(out / "summary.json"))["defense"] == summary["defense"]
    assert json.load(open(out / "config.json"))["config"]["defense"] == "union"


def test_a_resumed_defended_run_ends_with_identical_numbers(tmp_path, monkeypatch):
    Simulation(defended_config(tmp_path / "whole"), progress=False).run()
    real_step = Simulation.step

    def crash(self, state):
        if state.round == 3:
            raise RuntimeError("crash")
        return real_step(self, state)

    monkeypatch.setattr(Simulation, "step", crash)
    with pytest.raises(RuntimeError):
        Simulation(defended_config(tmp_path / "cut"), progress=False).run()
    monkeypatch.setattr(Simulation, "step", real_step)
    Simulation(defended_config(tmp_path / "cut"), progress=False).run()

    def lines(d):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in open(d / "rounds.jsonl")]

    assert lines(tmp_path / "cut") == lines(tmp_path / "whole")


@pytest.mark.parametrize("rule", ["krum", "bulyan", "trimmed_mean"])
def test_every_rule_runs_defended(tmp_path, rule):
    cfg = defended_config(tmp_path / rule, rule=rule, compromised=2 if rule == "bulyan" else 4, rounds=2,
                          attack="gaussian")
    summary = Simulation(cfg, progress=False).run()
    assert summary["defense"]["rounds"] == 2 and np.isfinite(summary["final_test_error"])


@pytest.mark.parametrize("overrides, message", [
    (dict(defense="roni"), "setting 'defense' must be one of"),
    (dict(defense="err", workers=20, sample=4, compromised=4), "must be below the 4 workers per round"),
])
def test_defense_settings_errors_are_named(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        defended_config(tmp_path / "d", **overrides).validate()


def test_the_cli_takes_defense(tmp_path):
    from fedrobust import cli

    out = tmp_path / "d"
    assert cli.main(["run", "--defense", "err", "--workers", "20", "--compromised", "4", "--rounds", "2",
                     "--quiet", "--out", str(out)]) == 0
    assert os.path.exists(out / "summary.json")
