"""Packaging for backend use: `pip install fedrobust` needs numpy only and gives the
aggregators, the attacks' and defenses' kernels and the reference; the simulator is the
`sim` extra (torch without an upper cap); a command that needs a missing extra names it."""
import importlib.metadata
import subprocess
import sys

from packaging.requirements import Requirement

BLOCK = "import sys; sys.modules['torch'] = None; sys.modules['sklearn'] = None; "


def _requirements():
    return [Requirement(r) for r in importlib.metadata.requires("fedrobust")]


def test_the_core_needs_numpy_only_and_torch_has_no_upper_cap():
    core = [r for r in _requirements() if r.marker is None]
    assert [r.name for r in core] == ["numpy"]
    sim = [r for r in _requirements() if r.marker is not None and r.marker.evaluate({"extra": "sim"})]
    torch = next(r for r in sim if r.name == "torch")
    assert not any(spec.operator in ("<", "<=", "==", "~=") for spec in torch.specifier)
    assert {r.name for r in sim} == {"torch", "scikit-learn"}
    assert any(r.name == "ray" and r.marker.evaluate({"extra": "dist"}) for r in _requirements())


def _python(code, tmp_path):
    return subprocess.run([sys.executable, "-c", BLOCK + code], capture_output=True, text=True, cwd=tmp_path)


def test_aggregators_attacks_defenses_and_the_reference_run_without_torch(tmp_path):
    code = """
import numpy as np
from fedrobust import aggregators, attacks, defenses, reference
U = np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)
assert np.array_equal(aggregators.median(U), reference.median(U).astype(np.float32))
A, B = defenses.leave_one_out(U, "krum", {"c": 5})
assert B.shape == (30, 40) and isinstance(B, np.ndarray)
ctx = attacks.AttackContext(updates=U, compromised=np.arange(6), global_model=np.zeros(40, np.float32),
                            rule="median", rule_params={}, knowledge="full", rng=np.random.default_rng(0), round=0)
rows = attacks.ATTACKS["trim"](ctx)
assert rows.shape == (6, 40)
print("torch" in sys.modules and sys.modules["torch"] is not None)
"""
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_command_that_needs_the_simulator_names_the_extra(tmp_path):
    for command in (["run"], ["reproduce", "table4", "--quick"], ["bench", "--simulation", "--quick"]):
        done = _python(f"from fedrobust import cli; sys.exit(cli.main({command!r}))", tmp_path)
        assert done.returncode == 2
        assert "needs torch, which is not installed: pip install 'fedrobust[sim]'" in done.stderr
    done = _python("from fedrobust import cli; sys.exit(cli.main(['info']))", tmp_path)
    assert done.returncode == 0 and "torch" in done.stdout and "not installed" in done.stdout


def test_every_file_the_readme_shows_is_in_the_repository():
    """The README's images and linked repository files exist (a results/ ignore rule once hid one)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    text = (root / "README.md").read_text()
    targets = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)
    assert targets, "the README shows no image: this test checks nothing"
    missing = [t for t in targets if not (root / t).is_file()]
    assert not missing, f"the README shows files that are not in the repository: {missing}"
    tracked = subprocess.run(["git", "ls-files", *targets], cwd=root, capture_output=True, text=True)
    if tracked.returncode == 0:  # a git checkout: the files are committed, not only present here
        assert sorted(tracked.stdout.split()) == sorted(targets), f"not committed: {targets}"
