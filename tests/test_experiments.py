"""The paper's presets (fedrobust.experiments) and `fedrobust reproduce`: every preset's cells
valid, each preset run in --quick mode with its table, CSV and JSON agreeing, the listing,
and the command's errors."""
import csv
import json

import pytest

from fedrobust import cli, experiments, sweep


def test_presets_cover_the_papers_rows_and_columns():
    cells = {(c.row, c.column): c.settings for c in experiments.attacks().cells}
    assert {("krum", "partial"), ("median", "full"), ("mean", "full")} <= set(cells)
    assert all(s["attack"] in ("krum", "trim") for (r, c), s in cells.items() if c in ("partial", "full"))
    assert cells[("krum", "full")]["attack"] == "krum" and "direction" not in cells[("krum", "full")]
    assert cells[("median", "full, direction rule")]["direction"] == "rule"
    table4 = experiments.preset("transfer")
    assert table4.name == "table4" and len(table4.cells) == 9 and len(table4.paper) == 9
    assert {c.settings["rule"] for c in table4.cells} == {"krum", "trimmed_mean", "median"}
    assert {c.settings["defense"] for c in experiments.table6().cells} == {"none", "err", "lfr", "union"}
    assert {c.settings["goal"] for c in experiments.table8().cells} == {"directed", "deviation"}


@pytest.mark.parametrize("name", list(experiments.PRESETS))
def test_every_preset_runs_in_quick_mode_and_its_files_match_the_printed_table(name, tmp_path, capsys):
    out = tmp_path / name
    assert cli.main(["reproduce", name, "--quick", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    grid = experiments.preset(name)
    table = json.loads((out / "table.json").read_text())
    assert table["rows"] == grid.rows() and table["columns"] == grid.columns() and table["seeds"] == [0]
    assert sweep.format_table(table) in printed and (out / "table.md").read_text().strip() in printed
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert len(rows) == len(grid.cells) == len(table["cells"])
    for row, cell in zip(rows, table["cells"]):
        assert cell["trials"] == 1 and cell["settings"]["rounds"] == cli.QUICK["rounds"]
        assert float(row["final_test_error_mean"]) == cell["final_test_error"]["mean"]
        assert f"{cell[table['key']]['mean']:.3f}" in printed
        assert (row["row"], row["column"]) == (cell["row"], cell["column"])
    if grid.figure is not None:  # one line per row, every column at an x value, drawn
        assert set(table["figure"]["x"]) == set(grid.columns()) and (out / "figure.png").stat().st_size > 10_000
    else:
        assert table["figure"] is None and not (out / "figure.png").exists()


def test_table3_shows_the_best_global_model_of_table2b_runs(tmp_path):
    table2b, table3 = experiments.preset("table2b"), experiments.preset("table3")
    assert [(c.row, c.column, c.settings) for c in table3.cells] == [(c.row, c.column, c.settings)
                                                                      for c in table2b.cells]
    assert table3.base == table2b.base and table3.key == "best_test_error" and len(table3.paper) == 15
    assert table2b.base["rounds"] == 2000 and experiments.preset("table2c").base["batch_size"] == 64


def test_table2d_without_its_csv_stops_at_once_naming_the_file(tmp_path, capsys):
    assert cli.main(["reproduce", "table2d", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--quiet"]) == 2
    assert "hmnist_64_64_L.csv" in capsys.readouterr().err


def test_reproduce_lists_the_presets_with_estimates(capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listing] == list(experiments.PRESETS)
    assert all(("min" in line or " h " in line or "unknown" in line) and "trials" in line for line in listing)
    assert "unknown" in next(line for line in listing if line.startswith("table2d"))  # ResNet20: not measured
    assert experiments.estimated_seconds(experiments.table2a()) < 30 * 60  # the default trials fit 30 minutes


def test_reproduce_command_errors_are_reported(tmp_path, capsys):
    status = cli.main(["reproduce", "table4", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                       "--rounds", "1", "--quiet"])
    assert status == 2
    assert "fedrobust reproduce: error:" in capsys.readouterr().err
    assert cli.main(["reproduce", "table9"]) == 2
    assert "unknown preset 'table9'; available: attacks, fig2a" in capsys.readouterr().err
    assert cli.main(["reproduce"]) == 2
    assert "name a preset" in capsys.readouterr().err
    assert cli.main(["reproduce", "table7b", "--trials", "2", "--seeds", "1,2"]) == 2
    assert "give --trials or --seeds, not both" in capsys.readouterr().err
    assert cli.main(["reproduce", "table7b", "--shard", "3/2"]) == 2
    assert "--shard: expected I/N with 1 <= I <= N, got '3/2'" in capsys.readouterr().err
