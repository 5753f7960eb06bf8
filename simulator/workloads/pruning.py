"""Real-mode pruning of the frozen base (``model.workloads.pruning``; bytes and FLOPs:
simulator/planning/pruning.py). ``torch.nn.utils.prune`` on every block linear layer:
``l1_unstructured`` (magnitude) or ``ln_structured`` (L1 over output rows, dim 0) with
``amount = 1 - density``, made permanent with ``prune.remove`` (the same Parameter objects keep
the pruned values, so the workload's state layout is unchanged). Pruning then quantizing (when
base_quantization is also set) stores the kept values quantized, as the planner charges."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from simulator.workloads.precision import block_linears


@torch.no_grad()
def prune_base_(model: nn.Module, method: str, density: float) -> tuple[int, int]:
    """Prune ``model``'s block linears in place; (weights kept, weights in those layers)."""
    kept = total = 0
    for _, mod in block_linears(model):
        if density < 1.0:
            if method == "structured":
                prune.ln_structured(mod, "weight", amount=1.0 - density, n=1, dim=0)
            else:
                prune.l1_unstructured(mod, "weight", amount=1.0 - density)
            prune.remove(mod, "weight")
        kept += int(torch.count_nonzero(mod.weight))
        total += mod.weight.numel()
    return kept, total
