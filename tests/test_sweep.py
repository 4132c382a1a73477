"""The sweep engine (fedrobust.sweep, `fedrobust sweep GRID.toml`): lists expand into cells,
seeds as a count or a list, one directory per cell and seed, finished runs read back, stale
ones never reused, shards that merge into the unsharded table, mean +- std, every grid
error named."""
import json
import os

import pytest

from fedrobust import cli, sweep
from fedrobust.executors import RunsFailed

SMALL = dict(dataset="digits", workers=20, compromised=4, rounds=2, eval_every=1, lr=0.5, batch_size=8)
GRID_TOML = """
name = "tiny"
seeds = 2
rows = ["rule"]
columns = ["attack"]
[settings]
dataset = "digits"
workers = 20
compromised = 4
rounds = 2
eval_every = 1
batch_size = 8
rule = ["median", "trimmed_mean"]
attack = ["none", "gaussian"]
"""


def _grid(**kw):
    cells = (sweep.Cell("median", "none", dict(rule="median", attack="none")),
             sweep.Cell("median", "gaussian", dict(rule="median", attack="gaussian")))
    return sweep.Grid("tiny", cells, SMALL, **kw)


def test_lists_expand_into_their_product_named_by_rows_and_columns():
    grid = sweep.grid_from_table({"seeds": [3, 1], "settings": dict(SMALL, rule=["median", "krum"],
                                                                    attack=["none", "trim"], q=[0.1, 0.5])},
                                 name="g")
    assert grid.seeds == (3, 1) and grid.name == "g"
    assert len(grid.cells) == 8 and grid.base == SMALL
    assert grid.rows() == ["median, none", "median, trim", "krum, none", "krum, trim"]
    assert grid.columns() == ["0.1", "0.5"]
    assert grid.cells[1].settings == dict(rule="median", attack="none", q=0.5)
    one = sweep.grid_from_table({"settings": dict(SMALL, rule=["median"])})
    assert one.rows() == ["all"] and one.columns() == ["median"] and one.seeds == (0,)


@pytest.mark.parametrize("table, message", [
    ({"settings": {}}, "needs a \\[settings\\] table"),
    ({"settings": {"rule": []}}, "setting 'rule': an empty list gives no cells"),
    ({"settings": {"seed": 3}}, "may not hold 'seed' or 'out'"),
    ({"settings": {"rulez": "median"}}, "unknown setting\\(s\\) \\['rulez'\\]"),
    ({"settings": {"rule": ["a"]}, "colour": 1}, "unknown key\\(s\\) \\['colour'\\]"),
    ({"seeds": 0, "settings": {"rule": ["median"]}}, "expected at least one seed"),
    ({"seeds": [1, 1], "settings": {"rule": ["median"]}}, "a seed appears twice"),
    ({"seeds": "3", "settings": {"rule": ["median"]}}, "expected a count or a list of seeds"),
    ({"rows": ["q"], "settings": {"rule": ["median"]}}, "rows: expected list-valued settings among \\['rule'\\]"),
    ({"rows": ["rule"], "columns": ["rule"], "settings": {"rule": ["median"]}}, "both rows and columns"),
    ({"rows": [], "columns": ["q"], "settings": {"rule": ["median"], "q": [0.1]}},
     "\\['rule'\\] name neither rows nor columns"),
])
def test_grid_errors_are_named(table, message):
    with pytest.raises(ValueError, match=message):
        sweep.grid_from_table(table)


def test_a_cell_that_cannot_run_stops_the_grid_before_anything_runs(tmp_path):
    grid = sweep.Grid("bad", (sweep.Cell("median", "none", dict(rule="median")),
                              sweep.Cell("krum", "full", dict(rule="krum", attack="krum"))), dict(SMALL, workers=10))
    with pytest.raises(ValueError, match="cell krum / full: setting 'compromised'"):
        sweep.run_grid(grid, str(tmp_path), progress=False)
    assert not any(tmp_path.iterdir())


def test_two_cells_in_one_place_are_refused(tmp_path):
    cell = sweep.Cell("median", "none", dict(rule="median"))
    with pytest.raises(ValueError, match="two cells share the row and column \\('median', 'none'\\)"):
        sweep.run_grid(sweep.Grid("twice", (cell, cell), SMALL), str(tmp_path), progress=False)


def test_one_directory_per_cell_and_seed_read_back_when_finished(tmp_path):
    logged = []
    table = sweep.run_grid(_grid(seeds=(0, 1)), str(tmp_path), progress=False, log=logged.append)
    assert sorted(os.listdir(tmp_path / "median--none")) == ["seed-0", "seed-1"]
    cell = table["cells"][1]
    assert cell["trials"] == 2 and cell["seeds"] == [0, 1] and cell["missing_seeds"] == []
    errors = [json.load(open(tmp_path / "median--gaussian" / f"seed-{s}" / "summary.json"))["final_test_error"]
              for s in (0, 1)]
    mean = sum(errors) / 2
    assert cell["final_test_error"]["mean"] == pytest.approx(mean)
    assert cell["final_test_error"]["std"] == pytest.approx(abs(errors[0] - errors[1]) / 2 ** 0.5)
    assert cell["attack"]["rounds_attacked"]["mean"] == 2
    again = sweep.run_grid(_grid(seeds=(0, 1)), str(tmp_path), progress=False, log=logged.append)
    assert sum("done before" in line for line in logged) == 4
    assert again["cells"] == table["cells"]
    text = sweep.format_table(table)
    assert text.splitlines()[0] == "| | none | gaussian |" and f"{mean:.3f} ± " in text


def test_a_finished_cell_of_fewer_rounds_is_extended_not_reused(tmp_path):
    sweep.run_grid(_grid(), str(tmp_path), progress=False)
    logged = []
    table = sweep.run_grid(_grid(), str(tmp_path), overrides={"rounds": 3}, progress=False, log=logged.append)
    assert not any("done before" in line for line in logged)
    summary = json.load(open(tmp_path / "median--none" / "seed-0" / "summary.json"))
    assert summary["rounds"] == 3 and table["cells"][0]["settings"]["rounds"] == 3
    with pytest.raises(RunsFailed, match="has 3 rounds done, more than rounds = 2"):
        sweep.run_grid(_grid(), str(tmp_path), progress=False)


def test_a_cell_directory_of_other_settings_is_refused_naming_them(tmp_path):
    sweep.run_grid(_grid(), str(tmp_path), progress=False)
    with pytest.raises(RunsFailed, match="q = 0.5 there, 0.1 here"):
        sweep.run_grid(_grid(), str(tmp_path), overrides={"q": 0.1}, progress=False)


def test_shards_run_every_nth_cell_and_merge_into_the_whole_table(tmp_path):
    whole = sweep.run_grid(_grid(), str(tmp_path / "whole"), progress=False)
    first = sweep.run_grid(_grid(), str(tmp_path / "split"), shard=(1, 2), progress=False)
    assert [c["trials"] for c in first["cells"]] == [1, 0] and first["cells"][1]["missing_seeds"] == [0]
    assert "| - |" in sweep.format_table(first)
    sweep.run_grid(_grid(), str(tmp_path / "split"), shard=(2, 2), progress=False)
    merged = sweep.run_grid(_grid(), str(tmp_path / "split"), collect=True, progress=False)
    strip = [{k: v for k, v in c.items() if k != "dirs"} for c in merged["cells"]]
    assert strip == [{k: v for k, v in c.items() if k != "dirs"} for c in whole["cells"]]
    with pytest.raises(ValueError, match="shard: expected i/n with 1 <= i <= n, got 0/2"):
        sweep.run_grid(_grid(), str(tmp_path / "split"), shard=(0, 2), progress=False)


def test_sweep_command_runs_a_toml_grid(tmp_path, capsys):
    path = tmp_path / "tiny.toml"
    path.write_text(GRID_TOML)
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    table = json.loads((out / "table.json").read_text())
    assert table["grid"] == "tiny" and table["rows"] == ["median", "trimmed_mean"]
    assert table["columns"] == ["none", "gaussian"] and all(c["trials"] == 2 for c in table["cells"])
    assert sweep.format_table(table) in printed
    assert cli.main(["sweep", str(path), "--out", str(out), "--seeds", "0", "--collect"]) == 0
    assert json.loads((out / "table.json").read_text())["seeds"] == [0]
    capsys.readouterr()
    (tmp_path / "bad.toml").write_text("[settings]\nrule = 'median'\nrulez = 1\n")
    assert cli.main(["sweep", str(tmp_path / "bad.toml")]) == 2
    assert "bad.toml: unknown setting(s) ['rulez']" in capsys.readouterr().err
    assert cli.main(["sweep", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err


def test_plot_draws_a_cells_seeds_as_mean_and_std(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from fedrobust import plotting

    sweep.run_grid(_grid(seeds=(0, 1)), str(tmp_path), progress=False)
    cell = tmp_path / "median--none"
    assert plotting.seed_directories(str(cell)) == [str(cell / "seed-0"), str(cell / "seed-1")]
    rounds, means, stds = plotting._mean_curve(plotting.seed_directories(str(cell)))
    curves = [plotting._curve(str(cell / f"seed-{s}")) for s in (0, 1)]
    assert rounds == [1, 2] and means[1] == pytest.approx((curves[0][2] + curves[1][2]) / 2)
    assert stds[1] == pytest.approx(abs(curves[0][2] - curves[1][2]) / 2 ** 0.5)
    assert cli.main(["plot", str(cell), str(tmp_path / "median--gaussian" / "seed-0"),
                     "--output", str(tmp_path / "a.png")]) == 0
    assert cli.main(["plot", "--mean", str(cell / "seed-0"), str(cell / "seed-1"),
                     "--output", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 10_000 and (tmp_path / "b.png").stat().st_size > 10_000


def test_columns_a_grid_does_not_run_are_shown_with_their_reason_and_the_papers_value(tmp_path):
    cells = tuple(sweep.Cell(rule, "none", dict(SMALL, rule=rule)) for rule in ("median", "mean"))
    grid = sweep.Grid("g", cells, seeds=(0,), paper={("median", "bga"): 0.13}, not_run={"bga": "no such attack"},
                      column_order=("bga", "none"))
    assert grid.columns() == ["bga", "none"]
    table = sweep.run_grid(grid, str(tmp_path / "g"), progress=False)
    lines = sweep.format_table(table).splitlines()
    assert lines[0] == "| | bga | none |"
    assert lines[2].startswith("| median | not run (paper 0.13) | 0.") and lines[3].startswith("| mean | not run | 0.")
    assert lines[-1] == "Not run (bga): no such attack"
    assert json.loads((tmp_path / "g" / "table.json").read_text())["not_run"] == {"bga": "no such attack"}
    with pytest.raises(ValueError, match="must list every column once"):
        sweep.Grid("g", cells, not_run={"bga": "x"}, column_order=("none",))
    with pytest.raises(ValueError, match="not_run columns \\['none'\\] have cells"):
        sweep.Grid("g", cells, not_run={"none": "x"})
