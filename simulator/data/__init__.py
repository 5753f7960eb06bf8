"""Federated datasets (numpy only): each client's shard is produced lazily and deterministically
from (seed, client id), so a population of a million clients costs one size column.

Datasets and partitioners are looked up by name in simulator/core/registry.py (``DATASETS``,
``PARTITIONERS``); plugins add their own with ``simulator.register_dataset`` /
``simulator.register_partitioner``.
"""

from simulator.data.base import FederatedDataset, build_dataset, build_run_dataset

__all__ = ["FederatedDataset", "build_dataset", "build_run_dataset"]
