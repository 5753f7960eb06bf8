"""Sweeps: scenario variants x seeds run as Ray Tune trials and compared."""
