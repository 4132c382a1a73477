"""Time fedrobust against numpy and torch: `python bench/compare.py [flags]` is `fedrobust bench [flags]`.

    python bench/compare.py                 # (100, 1e6) and (1000, 1e5), with memory, a few minutes
    python bench/compare.py --quick         # small shapes, a few seconds
    python bench/compare.py --json out.json --repeats 5 --threads 2 --no-memory

The measurement itself lives in fedrobust/benchmarks/ (aggregation.py).
"""
import sys

from fedrobust.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
