"""Federated datasets (numpy only): each client's shard is produced lazily and deterministically
from (seed, client id), so a population of a million clients costs one size column."""

from simulator.data.base import FederatedDataset, build_dataset

__all__ = ["FederatedDataset", "build_dataset"]
