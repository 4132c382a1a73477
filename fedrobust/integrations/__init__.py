"""Adapters that put fedrobust's rules and defenses into other federated-learning frameworks.

    fedrobust.integrations.flower   Flower strategies (`pip install 'fedrobust[flower]'`)

Nothing is imported here: each adapter imports its framework only when it is itself imported,
so `import fedrobust` never needs one.
"""
