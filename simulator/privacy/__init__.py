"""Differential privacy for FedAvg (DP-FedAvg, McMahan et al. ICLR 2018) and its accounting.

``dp`` holds the pure maths (clipping, noise, the fixed-denominator aggregate) and the client
update hook the workloads call before ``Partial.add_client``; ``accountant`` wraps dp-accounting's
RDP accountant. Imports numpy only at package level (dp-accounting is loaded on first use).
"""

from simulator.privacy.dp import ClientUpdateHook, ServerPrivacy, clip_update, make_update_hook

__all__ = ["ClientUpdateHook", "ServerPrivacy", "clip_update", "make_update_hook"]
