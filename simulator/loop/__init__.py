"""The round pipeline: one ``Simulation`` and the triggers that decide when the server aggregates."""
