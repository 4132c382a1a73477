"""Benchmarks of fedrobust (``fedrobust bench``), one concept per module:

- `inputs`: the seeded update arrays and the Byzantine counts;
- `baselines`: the numpy and torch versions of each rule (torch ones on CPU or CUDA tensors);
- `cases`: the rule table (rules, implementations, parameters) and the timed cases built from it;
- `timing`: best-of-N, interleaved, median and CUDA-event timing;
- `memory`: a kernel's peak extra memory, probed in a fresh process;
- `machine`: CPU model, threads, machine load and CPU-seconds accounting;
- `aggregation`: the rules against numpy and torch (``fedrobust bench``);
- `attacks`: crafting each attack against one aggregation (``fedrobust bench --attacks``);
- `simulation`: the batched simulation against a per-worker loop (``fedrobust bench --simulation``);
- `report`: the plain-text tables and the JSON files.

Importing this package imports nothing: each module is imported where it is needed, and only
`simulation` imports torch at once (the others import it when first needed, if installed).
"""
