"""Built-in server strategies, one module each (docs/strategies.md: formulas, sources, triggers).

Each is registered by one line in simulator/core/registry.py (``STRATEGIES.add``) with its
declarations; its parameters are the class's ``Params`` (a pydantic model, validated as
``aggregation.params``). Shared helpers live in ``base``.
"""
