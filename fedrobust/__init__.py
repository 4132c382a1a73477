"""fedrobust: Byzantine-robust federated learning under model poisoning.

Native (C++/OpenMP, CUDA) aggregation rules - mean, median, trimmed mean,
Krum / Multi-Krum, Bulyan - with plain numpy twins in `fedrobust.reference`, and
the same rules on a model split over its parameters (`fedrobust.sharded`);
the simulation (fedrobust.data, fedrobust.models, fedrobust.simulation) and the
`fedrobust` command line on top of them.
"""
from fedrobust import aggregators, reference, sharded, stats
from fedrobust._native import backend_info, cpu, set_num_threads, set_threads

__version__: str = cpu.version  # the project version the native module was built from
__all__ = ["aggregators", "reference", "sharded", "stats", "backend_info", "set_num_threads", "set_threads",
           "__version__"]
