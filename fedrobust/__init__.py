"""fedrobust: Byzantine-robust federated learning under model poisoning.

Native (C++/OpenMP, CUDA) aggregation rules - mean, median, trimmed mean,
Krum / Multi-Krum, Bulyan - with plain numpy twins in `fedrobust.reference`.
"""
from fedrobust import aggregators, reference, stats
from fedrobust._native import backend_info, set_num_threads

__version__ = "0.1.0"
__all__ = ["aggregators", "reference", "stats", "backend_info", "set_num_threads", "__version__"]
