"""Dataset loaders (SPEC 8.1, 13 items 13 and 14).

Every loader returns a `Dataset` with float32 inputs and int64 labels. Files are read from a
directory the caller names (`data_dir`) or from the environment variable FEDROBUST_DATA;
nothing is downloaded.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from fedrobust.data.idx import find_file, missing_files_message, read_images_and_labels

PathLike = Union[str, "os.PathLike[str]"]
ENV_VAR = "FEDROBUST_DATA"

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_FILES = ("fashion-npm-all-images-idx3-ubyte", "fashion-npm-all-labels-idx1-ubyte")  # the 70,000-image pool
# The standard release's names (also torchvision's FashionMNIST/raw/): its train and test files form the pool.
FASHION_STANDARD_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                          "t10k-labels-idx1-ubyte")
FASHION_DIRS = ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "raw")
CHMNIST_FILE = "hmnist_64_64_L.csv"


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test split.

    x_train: float32, shape (n_train, *input_shape); y_train: int64, shape (n_train,), in [0, num_classes).
    x_test: float32, shape (n_test, *input_shape);   y_test: int64, shape (n_test,).
    input_shape: (1, H, W) for images, (num_features,) for tabular data.
    notes: how the data were preprocessed and split.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    input_shape: Tuple[int, ...]
    notes: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, "x_" + split), getattr(self, "y_" + split)
            if x.dtype != np.float32 or y.dtype != np.int64:
                raise TypeError(f"{self.name}: x_{split} must be float32 and y_{split} int64, "
                                f"got {x.dtype} and {y.dtype}")
            if x.shape[1:] != tuple(self.input_shape) or y.shape != (x.shape[0],):
                raise ValueError(f"{self.name}: x_{split} shape {x.shape} / y_{split} shape {y.shape} "
                                 f"do not match input_shape {self.input_shape}")
            if len(y) == 0:
                raise ValueError(f"{self.name}: no {split} examples (the {split} split is empty)")
            finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
            if not finite.all():
                raise ValueError(f"{self.name}: x_{split} holds NaN or Inf values (first in example "
                                 f"{int(np.argmin(finite))})")
            if y.min() < 0 or y.max() >= self.num_classes:
                raise ValueError(f"{self.name}: y_{split} labels must lie in [0, {self.num_classes}), "
                                 f"got {int(y.min())} .. {int(y.max())}")

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
                f"num_classes={self.num_classes}, input_shape={self.input_shape}, notes={self.notes!r})")


def training_subset(ds: Dataset, n: int, rng: np.random.Generator) -> Dataset:
    """`ds` with a uniform sample of n of its training examples (without replacement, kept in
    their order); the test split unchanged. SPEC 7, 9.4: Table 5 trains on 6,000 MNIST examples."""
    if not 1 <= n <= len(ds.y_train):
        raise ValueError(f"setting 'train_examples' must be in [1, {len(ds.y_train)}] (the training examples of "
                         f"{ds.name}); got {n!r}")
    keep = np.sort(rng.choice(len(ds.y_train), size=n, replace=False))
    notes = f"{ds.notes}; " if ds.notes else ""
    return dataclasses.replace(ds, x_train=ds.x_train[keep], y_train=ds.y_train[keep],
                               notes=f"{notes}a uniform sample of {n} of the {len(ds.y_train)} training examples")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------
def _resolve_dir(data_dir: Optional[PathLike], dataset: str, needs: str) -> Path:
    """data_dir, else $FEDROBUST_DATA, else a FileNotFoundError that says what is needed."""
    if data_dir is None:
        data_dir = os.environ.get(ENV_VAR) or None
    if data_dir is None:
        raise FileNotFoundError(
            f"{dataset}: no data directory given; it needs {needs}. Pass load({dataset!r}, "
            f"data_dir=...) or set the environment variable {ENV_VAR} to the directory."
        )
    path = Path(data_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: data directory {path} does not exist; it needs {needs}")
    return path


def _find_all(base: Path, subdirs: Tuple[str, ...], names: Tuple[str, ...], dataset: str) -> Tuple[Path, ...]:
    """Paths of all `names` (raw or .gz) in the first of base, base/subdir... that holds them all."""
    dirs = (base,) + tuple(base / s for s in subdirs)
    found = [tuple(find_file(d, n) for n in names) for d in dirs]
    for paths in found:
        if all(paths):
            return paths  # type: ignore[return-value]
    best = max(range(len(dirs)), key=lambda i: sum(p is not None for p in found[i]))
    missing = [n for n, p in zip(names, found[best]) if p is None]
    others = ", ".join(str(d) for i, d in enumerate(dirs) if i != best)
    raise FileNotFoundError(missing_files_message(dataset, dirs[best], missing) + f" (also searched {others})")


def _split_indices(n: int, n_test: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """A random split of range(n): (train indices, test indices), each in random order."""
    perm = rng.permutation(n)
    return perm[n_test:], perm[:n_test]


# ---------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------
def load_mnist(data_dir: Optional[PathLike] = None, seed: int = 0) -> Dataset:
    """MNIST, official 60,000/10,000 split; x shape (n, 1, 28, 28), pixels / 255. seed is unused."""
    base = _resolve_dir(data_dir, "mnist", "the IDX files " + ", ".join(f"{n}[.gz]" for n in MNIST_FILES))
    tr_x, tr_y, te_x, te_y = _find_all(base, ("mnist", "MNIST"), MNIST_FILES, "mnist")
    x_train, y_train = read_images_and_labels(tr_x, tr_y, 10)
    x_test, y_test = read_images_and_labels(te_x, te_y, 10)
    return Dataset("mnist", x_train, y_train, x_test, y_test, 10, tuple(x_train.shape[1:]),
                   notes=f"official train/test split from {tr_x.parent}; pixels / 255, no mean/std normalisation")


def load_fashion_mnist(data_dir: Optional[PathLike] = None, seed: int = 0) -> Dataset:
    """Fashion-MNIST from the 70,000-image pool; seeded class-stratified split, 1/7 of each class to test.

    For the full pool that is 6,000 train / 1,000 test per class (60,000/10,000).
    x shape (n, 1, 28, 28), pixels / 255; train and test are each in random order.
    """
    wanted = (" or ".join(", ".join(f"{n}[.gz]" for n in names) for names in (FASHION_FILES, FASHION_STANDARD_FILES)))
    base = _resolve_dir(data_dir, "fashion_mnist", "the IDX files " + wanted)
    try:
        images, labels = _find_all(base, FASHION_DIRS, FASHION_FILES, "fashion_mnist")
        x, y = read_images_and_labels(images, labels, 10)
    except FileNotFoundError as pool_missing:
        try:
            tr_x, tr_y, te_x, te_y = _find_all(base, FASHION_DIRS, FASHION_STANDARD_FILES, "fashion_mnist")
        except FileNotFoundError as standard_missing:
            raise FileNotFoundError(f"fashion_mnist: cannot find the pool ({pool_missing}) nor the standard files "
                                    f"({standard_missing})") from None
        (x_tr, y_tr), (x_te, y_te) = (read_images_and_labels(a, b, 10) for a, b in ((tr_x, tr_y), (te_x, te_y)))
        x, y, images = np.concatenate([x_tr, x_te]), np.concatenate([y_tr, y_te]), tr_x
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(idx.size / 7))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    train_idx = rng.permutation(np.concatenate(train))
    test_idx = rng.permutation(np.concatenate(test))
    return Dataset("fashion_mnist", x[train_idx], y[train_idx], x[test_idx], y[test_idx], 10, tuple(x.shape[1:]),
                   notes=(f"no official split: {len(y)}-image pool from {images.parent}, seeded (seed={seed}) "
                          f"class-stratified split, {len(train_idx)} train / {len(test_idx)} test "
                          "(1/7 of each class to test); pixels / 255"))


def load_chmnist(data_dir: Optional[PathLike] = None, seed: int = 0) -> Dataset:
    """CH-MNIST from the public hmnist_64_64_L.csv (header row, 4096 pixel columns, label 1..8).

    data_dir is the directory holding the file or the file's own path. Seeded random split,
    20% to test (4,000/1,000 for the 5,000-row file); x shape (n, 1, 64, 64), pixels / 255;
    labels shifted by -1 to 0..7.
    """
    base = _resolve_dir(data_dir, "chmnist", f"the CSV file {CHMNIST_FILE}")
    path = base
    if base.is_dir():
        candidates = [base / CHMNIST_FILE, base / "chmnist" / CHMNIST_FILE]
        path = next((p for p in candidates if p.is_file()), candidates[0])
        if not path.is_file():
            raise FileNotFoundError(f"chmnist: cannot find {CHMNIST_FILE} in {base} (nor in {base / 'chmnist'})")
    ncols = 64 * 64 + 1
    with open(path) as f:
        header = f.readline().strip().split(",")
    if len(header) != ncols:
        raise ValueError(f"{path}: header row has {len(header)} columns, expected {ncols} (4096 pixels and a label)")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path}: cannot parse the CSV ({exc})") from exc
    if table.shape[1] != ncols or table.shape[0] < 2:
        raise ValueError(f"{path}: expected at least 2 data rows of {ncols} columns, got shape {table.shape}")
    finite = np.isfinite(table).all(axis=1)
    if not finite.all():
        raise ValueError(f"{path}: data row {int(np.argmin(finite)) + 1} holds a value that is not a finite number")
    pixels, labels = table[:, :-1], table[:, -1]
    if not (np.all(labels == np.round(labels)) and labels.min() >= 1 and labels.max() <= 8):
        raise ValueError(f"{path}: labels must be integers in 1..8, got range [{labels.min()}, {labels.max()}]")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError(f"{path}: pixel values must lie in [0, 255], got [{pixels.min()}, {pixels.max()}]")
    x = (pixels.astype(np.float32) / np.float32(255.0)).reshape(-1, 1, 64, 64)
    y = labels.astype(np.int64) - 1
    n = len(y)
    train, test = _split_indices(n, int(round(0.2 * n)), np.random.default_rng(seed))
    return Dataset("chmnist", x[train], y[train], x[test], y[test], 8, (1, 64, 64),
                   notes=(f"{path}: seeded (seed={seed}) random split {len(train)} train / {len(test)} test; "
                          "pixels / 255; labels - 1"))


def load_breast_cancer(data_dir: Optional[PathLike] = None, seed: int = 0) -> Dataset:
    """Breast Cancer Wisconsin (Diagnostic), bundled with scikit-learn; x shape (n, 30).

    Seeded stratified 80/20 split (455/114). Each feature is normalised as
    (x - mean) / (max - min) with mean, max and min of the training split. data_dir is unused.
    """
    from sklearn.datasets import load_breast_cancer as _sk_load
    from sklearn.model_selection import train_test_split

    x, y = _sk_load(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    mean, span = x_train.mean(axis=0), x_train.max(axis=0) - x_train.min(axis=0)
    span[span == 0] = 1.0
    x_train, x_test = (x_train - mean) / span, (x_test - mean) / span
    return Dataset("breast_cancer", x_train.astype(np.float32), y_train.astype(np.int64),
                   x_test.astype(np.float32), y_test.astype(np.int64), 2, (30,),
                   notes=(f"scikit-learn copy; seeded (seed={seed}) stratified split {len(y_train)}/{len(y_test)}; "
                          "features (x - mean) / (max - min) with training-split statistics"))


def load_digits(data_dir: Optional[PathLike] = None, seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits; x shape (n, 1, 8, 8), pixels / 16; seeded stratified split 1437/360."""
    from sklearn.datasets import load_digits as _sk_load
    from sklearn.model_selection import train_test_split

    x, y = _sk_load(return_X_y=True)
    x = (x / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    notes = f"scikit-learn copy; seeded (seed={seed}) stratified split {len(y_train)}/{len(y_test)}; pixels / 16"
    return Dataset("digits", x_train, y_train.astype(np.int64), x_test, y_test.astype(np.int64), 10, (1, 8, 8),
                   notes=notes)


def synthetic(n_train: int = 10000, n_test: int = 2000, num_features: int = 784,
              num_classes: int = 10, seed: int = 0) -> Dataset:
    """A learnable Gaussian problem: x = mu[y] + N(0, I), x shape (n, num_features).

    Class means mu are random directions of norm 3 (pairwise distance about 4.2, so a linear
    model reaches low error); labels are uniform over the classes.
    """
    if min(n_train, n_test, num_features) < 1 or num_classes < 2:
        raise ValueError("synthetic: n_train, n_test, num_features must be >= 1 and num_classes >= 2")
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((num_classes, num_features))
    mu *= 3.0 / np.linalg.norm(mu, axis=1, keepdims=True)

    def draw(n: int) -> Tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, size=n)
        x = mu[y] + rng.standard_normal((n, num_features))
        return x.astype(np.float32), y.astype(np.int64)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("synthetic", x_train, y_train, x_test, y_test, num_classes, (num_features,),
                   notes=f"seeded (seed={seed}) Gaussian classes: x = mu[y] + N(0, I), |mu| = 3")


_LOADERS: Dict[str, Callable[..., Dataset]] = {
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "chmnist": load_chmnist,
    "breast_cancer": load_breast_cancer,
    "digits": load_digits,
    "synthetic": lambda data_dir=None, seed=0: synthetic(seed=seed),
}
DATASETS: Tuple[str, ...] = tuple(_LOADERS)


def load(name: str, data_dir: Optional[PathLike] = None, seed: int = 0) -> Dataset:
    """Load dataset `name` (one of DATASETS) with a split seeded by `seed`.

    data_dir: directory with the data files (mnist, fashion_mnist, chmnist), or the CSV's path
    for chmnist; defaults to $FEDROBUST_DATA. breast_cancer, digits and synthetic need no files.
    """
    key = str(name).lower().replace("-", "_")
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    return _LOADERS[key](data_dir=data_dir, seed=seed)
