"""Where a transformer's LoRA adapters sit in the flat global state, computed from the scenario
alone (pure: no torch), for server rules that act on the factors themselves (FlexLoRA).

The real-mode LLM workload (``simulator/workloads/llm.py``, ``StateLayout``) puts the adapters
first, in module order, each as ``A`` [r_max, d_in] then ``B`` [d_out, r_max]: for every
decoder block the targeted linear layers in the model's order (Llama: q, k, v, o, gate, up,
down), then targeted layers outside the blocks (an explicitly named ``lm_head``); a FLoRA state
then holds each adapted layer's base weight [d_out, d_in] in the same order (``base_layout``).
``tests/test_lora_aggregation.py`` checks this against the torch layout of built models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from simulator.errors import InputError

LORA_SCALING = 2.0  # alpha / r_max (alpha = 16 at r = 8, the LoRA paper's common setting)


@dataclass(frozen=True)
class AdapterSlot:
    """One adapted layer: ``A`` at ``a_start`` ([rank, d_in]), ``B`` at ``b_start`` ([d_out,
    rank]) in the flat state."""

    module: str
    a_start: int
    b_start: int
    rank: int
    d_in: int
    d_out: int

    @property
    def stop(self) -> int:
        return self.b_start + self.d_out * self.rank


@dataclass(frozen=True)
class BaseSlot:
    """The frozen weight [d_out, d_in] of one adapted layer in a FLoRA state (after all
    adapters, in the same order)."""

    module: str
    start: int
    d_in: int
    d_out: int

    @property
    def stop(self) -> int:
        return self.start + self.d_out * self.d_in


def base_layout(adapters: list[AdapterSlot]) -> list[BaseSlot]:
    """Where the adapted layers' base weights follow the adapters (``StateConfig.base ==
    "adapted"``, FLoRA)."""
    off = adapters[-1].stop if adapters else 0
    out = []
    for s in adapters:
        out.append(BaseSlot(s.module, off, s.d_in, s.d_out))
        off += s.d_out * s.d_in
    return out


def adapter_layout(scenario: Any) -> list[AdapterSlot]:
    """The adapters of a LoRA-only transformer state (``model.workloads.order: [lora]``)."""
    from simulator.config.llm import closed_form_spec
    from simulator.planning.options import DEFAULT_TARGETS

    m = scenario.model
    w = m.workloads
    spec = closed_form_spec(m)
    r_max = int(max(w.lora_ranks))
    targets = w.lora_targets or DEFAULT_TARGETS[spec.family]

    def hit(lin: Any) -> bool:
        return not lin.is_output if targets == "all-linear" else lin.name in targets

    if spec.family != "llama":
        raise InputError("model.config", f"LoRA factor aggregation needs a Llama-family model "
                         f"in real mode (got '{spec.family}')")
    names = [(f"model.layers.{b}.{'self_attn' if i < 4 else 'mlp'}.{lin.name}", lin)
             for b in range(spec.num_layers) for i, lin in enumerate(spec.linears)
             if lin.in_blocks and hit(lin)]
    names += [(lin.name, lin) for lin in spec.linears if not lin.in_blocks and hit(lin)]
    out, off = [], 0
    for name, lin in names:
        a = off
        b = a + r_max * lin.d_in
        out.append(AdapterSlot(name, a, b, r_max, lin.d_in, lin.d_out))
        off = b + lin.d_out * r_max
    return out
