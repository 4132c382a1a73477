"""The experiment grids and `fedrobust reproduce`: every cell validated before any runs,
one results directory per cell, finished cells read back, the table written."""
import json
import os

import pytest

from fedrobust import cli, experiments

SMALL = dict(dataset="digits", workers=20, compromised=4, rounds=2, eval_every=1, lr=0.5, batch_size=8)


def test_grids_cover_the_papers_rows_and_columns():
    cells = experiments.attacks_grid()
    assert {(r, c) for r, c, _ in cells} >= {("krum", "partial"), ("median", "full"), ("mean", "full")}
    assert all(s["attack"] in ("krum", "trim") for r, c, s in cells if c in ("partial", "full"))
    assert {s["attack"] for r, c, s in cells if r == "krum" and c == "full"} == {"krum"}
    transfer = experiments.transfer_grid()
    assert len(transfer) == 9 and {s["rule"] for _, _, s in transfer} == {"krum", "trimmed_mean", "median"}


def test_run_grid_writes_one_directory_per_cell_and_reads_finished_cells_back(tmp_path, monkeypatch):
    cells = [("median", "none", dict(rule="median", attack="none")),
             ("median", "partial", dict(rule="median", attack="trim", knowledge="partial"))]
    monkeypatch.setitem(experiments.GRIDS, "tiny", lambda: cells)
    logged = []
    table = experiments.run_grid("tiny", str(tmp_path), overrides=SMALL, progress=False, log=logged.append)
    assert table["rows"] == ["median"] and table["columns"] == ["none", "partial"]
    for cell in table["cells"]:
        assert os.path.exists(os.path.join(cell["out"], "summary.json"))
        assert 0.0 <= cell["final_test_error"] <= 1.0
    assert json.load(open(tmp_path / "table.json"))["cells"][1]["attack"]["rounds_attacked"] == 2
    assert (tmp_path / "table.csv").read_text().splitlines()[0].startswith("row,column,final_test_error")
    again = experiments.run_grid("tiny", str(tmp_path), overrides=SMALL, progress=False, log=logged.append)
    assert sum("done before" in line for line in logged) == 2
    assert [c["final_test_error"] for c in again["cells"]] == [c["final_test_error"] for c in table["cells"]]
    text = experiments.format_table(table)
    assert text.splitlines()[0] == "| | none | partial |" and text.count("\n") == 2


def test_a_cell_with_impossible_settings_stops_the_grid_before_anything_runs(tmp_path, monkeypatch):
    cells = [("median", "none", dict(rule="median")), ("krum", "full", dict(rule="krum", attack="krum"))]
    monkeypatch.setitem(experiments.GRIDS, "bad", lambda: cells)
    with pytest.raises(ValueError, match="compromised"):
        experiments.run_grid("bad", str(tmp_path), overrides=dict(SMALL, workers=10), progress=False)
    assert not any(tmp_path.iterdir())


def test_reproduce_command_errors_are_reported(tmp_path, capsys):
    status = cli.main(["reproduce", "attacks", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"),
                       "--rounds", "1", "--quiet"])
    assert status == 2
    assert "fedrobust reproduce: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "table9"])
