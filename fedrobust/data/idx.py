"""Reader for the IDX format of MNIST / Fashion-MNIST (http://yann.lecun.com/exdb/mnist/).

Layout: a big-endian 4-byte magic number 0x000008NN (0x08 = unsigned byte data, NN = number
of dimensions), NN big-endian uint32 sizes, then prod(sizes) bytes of data, nothing after.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: (n,)
IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: (n, rows, cols)


def find_file(directory: Path, name: str) -> Optional[Path]:
    """`directory/name` if it exists, else `directory/name.gz` if it exists, else None."""
    for candidate in (directory / name, directory / (name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: PathLike, magic: int) -> np.ndarray:
    """Read one IDX file (raw, or gzip-compressed when the name ends in .gz) as uint8.

    magic: the expected magic number (LABELS_MAGIC or IMAGES_MAGIC).
    Returns an array of shape (n,) for labels or (n, rows, cols) for images.
    Raises FileNotFoundError if the file is missing, ValueError (naming the file) if it is
    not valid gzip, has another magic number, or its length differs from what the header says.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: IDX file not found")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if path.name.endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{path}: cannot decompress ({exc}); the file is truncated or corrupt") from None

    if len(raw) < 4:
        raise ValueError(f"{path}: file is {len(raw)} bytes, too short for an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: bad magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: file is {len(raw)} bytes, too short for a {ndim}-dimension IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: file is {len(raw)} bytes but the header (shape {shape}) implies {expected} bytes; "
            "the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_images_and_labels(images: Path, labels: Path, num_classes: int) -> Tuple[np.ndarray, np.ndarray]:
    """Read an IDX image/label pair and check that they match.

    Returns x of shape (n, 1, rows, cols) float32 in [0, 1] (pixels / 255) and y of shape (n,) int64.
    Raises ValueError naming the file if the counts differ or a label is outside [0, num_classes).
    """
    x = read_idx(images, IMAGES_MAGIC)
    y = read_idx(labels, LABELS_MAGIC)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{images} holds {x.shape[0]} images but {labels} holds {y.shape[0]} labels: count mismatch"
        )
    bad = np.flatnonzero(y >= num_classes)
    if bad.size:
        raise ValueError(
            f"{labels}: label {int(y[bad[0]])} at index {int(bad[0])} is outside [0, {num_classes})"
        )
    x = (x.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, y.astype(np.int64)


def missing_files_message(dataset: str, directory: Path, names: Sequence[str]) -> str:
    """Error text listing the files a loader needs."""
    wanted = ", ".join(f"{n}[.gz]" for n in names)
    return f"{dataset}: cannot find {wanted} in {directory}"
