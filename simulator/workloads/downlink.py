"""Downlink compression in real mode (``model.workloads.downlink``; bytes:
simulator/planning/precision.py ``down_bytes``). A client trains from the global state as it
arrives, int8 / int4 block-quantized and dequantized (precision.py ``downlink_roundtrip``), and
its update is its trained values minus what it received; the server keeps and averages into its
full-precision model. Without a cached base the frozen base also comes down quantized: its
resident copy is quantized once at build (it never changes, so every round's copy is the same)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from simulator.aggregation import Partial
from simulator.core.jobs import JobBatch
from simulator.workloads.llm import LLMWorkload
from simulator.workloads.precision import downlink_roundtrip


class DownlinkLLMWorkload(LLMWorkload):
    """:class:`LLMWorkload` whose clients receive the downlink-encoded global state and, with
    ``pruning.schedule: prunefl``, whose frozen base is pruned further as the rounds go
    (planning/pruning.py ``density_at``; magnitude and row pruning take the zeros first, so
    pruning to the round's overall density extends the earlier mask)."""

    downlink: Any = None
    prune_schedule: Any = None
    density: float = 1.0

    def train(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        if self.prune_schedule is not None:
            from simulator.planning.pruning import density_at
            from simulator.workloads.pruning import prune_base_

            d = density_at(self.prune_schedule, int(jobs.round))
            if d < self.density:
                prune_base_(self.model, self.prune_schedule.method, d)
                self.density = d
        if self.downlink is not None and self.downlink.method != "none":
            global_flat = downlink_roundtrip(global_flat, self.downlink)
        return super().train(global_flat, jobs)


@torch.no_grad()
def quantize_frozen_(wl: LLMWorkload, downlink: Any) -> int:
    """Round-trip every resident tensor that is not in the global state (the frozen base a
    client without a cached copy downloads) through ``downlink``; the elements changed."""
    in_state = {id(s.param) for s in wl.layout.slots}
    n = 0
    for p in wl.model.parameters():
        if id(p) in in_state:
            continue
        x = p.detach().cpu().numpy().astype(np.float64).reshape(-1)
        p.copy_(torch.from_numpy(downlink_roundtrip(x, downlink)).reshape(p.shape).to(p.dtype))
        n += p.numel()
    return n
