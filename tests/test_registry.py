"""One registry entry per rule (aggregators.RULES): the settings, the command line's help, the
parameters a run binds and the error messages all derive from it, and the requirement checks
are the native modules' own."""
import numpy as np
import pytest

from fedrobust import aggregators as agg
from fedrobust._native import cpu
from fedrobust.cli import build_parser


def _run_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command" or getattr(a, "choices", None))
    return sub.choices["run"].format_help()


def test_every_rule_attack_and_model_is_in_the_run_help():
    from fedrobust import models
    from fedrobust.attacks import ATTACKS

    text = " ".join(_run_help().split())
    for name in [*agg.RULES, *ATTACKS, *models.MODELS]:
        assert name in text, name
    for entry in agg.RULES.values():
        if entry.params:
            assert entry.requirement in text, entry.name


@pytest.mark.parametrize("m, c", [(5, 2), (6, 2), (8, 3), (100, 49)])
def test_the_settings_refuse_an_unfit_krum_with_the_kernels_own_message(m, c):
    from fedrobust.simulation import Config

    with pytest.raises(ValueError) as native:
        agg.krum(np.zeros((m, 3)), c)
    with pytest.raises(ValueError) as check:
        cpu.check_krum(m, c)
    with pytest.raises(ValueError) as setting:
        Config(rule="krum", workers=m, compromised=c).validate()
    assert str(check.value) == str(native.value)
    assert str(native.value) in str(setting.value) and "'compromised'" in str(setting.value)


def test_the_settings_refuse_an_unfit_trimmed_mean_and_bulyan_with_the_kernels_own_messages():
    from fedrobust.simulation import Config

    with pytest.raises(ValueError) as native:
        agg.trimmed_mean(np.zeros((10, 3)), 5)
    with pytest.raises(ValueError) as setting:
        Config(rule="trimmed_mean", workers=10, compromised=4, beta=5).validate()
    assert str(native.value) in str(setting.value) and "'beta'" in str(setting.value)
    with pytest.raises(ValueError) as native:
        agg.bulyan(np.zeros((22, 3)), 5)
    with pytest.raises(ValueError) as setting:
        Config(rule="bulyan", workers=22, compromised=5).validate()
    assert str(native.value) in str(setting.value)


def test_a_run_binds_the_parameters_its_rule_declares():
    from fedrobust.simulation import Config

    config = Config(workers=20, compromised=4, beta=3, krum_distance="plain")
    assert config.rule_params("trimmed_mean") == {"beta": 3}
    assert config.rule_params("krum") == {"c": 4, "squared": False}
    assert config.rule_params("bulyan") == {"c": 4, "squared": False}
    assert config.rule_params("median") == {} and config.rule_params("mean") == {}
    for name, entry in agg.RULES.items():
        assert set(config.rule_params(name)) <= {p.name for p in entry.params}, name


def test_adding_a_rule_is_one_registry_entry(monkeypatch, tmp_path):
    """A new entry is accepted by the settings, listed in the help and runs in a simulation."""
    from fedrobust.simulation import Config, Simulation

    def midrange(U):
        lo, hi = agg.RULES["trimmed_mean"].function(U, 0), agg.median(U)
        return (lo + hi) / 2

    entry = agg.Rule("midrange", midrange, (), "m >= 1", lambda m: None, "half the mean plus half the median")
    monkeypatch.setitem(agg.RULES, "midrange", entry)
    assert "midrange" in agg.available() and "midrange" in _run_help()
    config = Config(rule="midrange", workers=10, compromised=2, rounds=2, eval_every=1)
    summary = Simulation(config, progress=False).run()
    assert 0.0 <= summary["final_test_error"] <= 1.0


def test_rules_that_select_rows_report_the_selection_with_the_aggregate():
    U = np.random.default_rng(0).standard_normal((15, 6))
    for name, params in (("krum", {"c": 3}), ("bulyan", {"c": 3})):
        entry = agg.RULES[name]
        aggregate, rows = entry.select(U, **params)
        np.testing.assert_array_equal(aggregate, entry.bind(**params)(U))
        assert rows.dtype == np.int64 and rows.size >= 1
    assert not agg.RULES["median"].selects_rows


def test_info_lists_every_rule_and_attack_with_its_summary(capsys):
    from fedrobust import cli
    from fedrobust.attacks import ATTACKS

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for entry in [*agg.RULES.values(), *ATTACKS.values()]:
        assert f"{entry.name:<15} {entry.summary}" in out, entry.name
    assert "(c, multi, squared; needs m > 2c + 2)" in out
    assert "defenses (--defense): err, lfr, union" in out
