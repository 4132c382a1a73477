"""Datasets and the non-IID worker partition of Fang et al. (SPEC 8.1, 8.4).

    ds = load("mnist", data_dir="/path/to/mnist")       # or set FEDROBUST_DATA
    parts = partition(ds.y_train, num_workers=100, num_classes=ds.num_classes, q=0.5,
                      rng=np.random.default_rng(0))
"""
from fedrobust.data.datasets import DATASETS, Dataset, load, synthetic, training_subset
from fedrobust.data.idx import read_idx
from fedrobust.data.partition import group_sizes, partition

__all__ = ["Dataset", "load", "partition", "DATASETS", "synthetic", "read_idx", "group_sizes", "training_subset"]
