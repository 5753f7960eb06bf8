"""The round pipeline: one ``Simulation`` and the triggers deciding when the server aggregates."""
