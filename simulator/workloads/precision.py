"""Real-mode quantization (docs/large-models.md 'Precisions', 'Downlink'): what a device stores or
receives at low precision is quantized and dequantized here, so training sees the values a
4-bit or 8-bit device would compute with and the accuracy cost is measured, not assumed.

* :func:`quantize_base_` fake-quantizes (quantize, then dequantize to float32) the frozen base's
  block linear weights in place, as ``model.workloads.base_quantization`` stores them: ``int8``
  per-row absmax (LLM.int8's vector-wise scales, without its fp16 outlier columns), ``nf4`` /
  ``fp4`` blocks of 64 with one fp32 absmax each and bitsandbytes' code books (NF4: Dettmers et
  al. 2023, QLoRA, appendix E; FP4: bitsandbytes' e2m1 table). The matmuls then run in float32
  on CPU: numerically the dequantized weights of a 4-bit kernel, not its speed. A true 4-bit GPU
  path (bitsandbytes / torchao kernels) is not run here (no GPU; skipped).
* :func:`downlink_roundtrip` applies ``model.workloads.downlink`` (int8 / int4 block absmax,
  compression.py's quantizer) to the global state a client receives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from simulator.workloads.compression import dequantize, quantize

BLOCK = 64  # bitsandbytes' 4-bit block size
NF4_CODE = (-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
            0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
            0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0)
# bitsandbytes' FP4 (e2m1, bias 3) magnitudes 0, 0.0625, 2, 3, 4, 6, 8, 12, normalized by 12
_FP4_MAG = (0.0, 0.0625 / 12, 2 / 12, 3 / 12, 4 / 12, 6 / 12, 8 / 12, 1.0)
FP4_CODE = tuple(sorted({-m for m in _FP4_MAG} | set(_FP4_MAG)))


def fake_quantize(w: torch.Tensor, method: str) -> torch.Tensor:
    """``w`` as a device storing it in ``method`` computes with it (float32)."""
    x = w.detach().to(torch.float32)
    if method == "none":
        return x.clone()
    if method == "int8":
        scale = x.abs().amax(dim=-1, keepdim=True) / 127.0
        q = torch.where(scale > 0, torch.round(x / scale.clamp_min(1e-30)), torch.zeros_like(x))
        return (q.clamp(-127, 127) * scale).reshape(w.shape)
    code = torch.tensor(NF4_CODE if method == "nf4" else FP4_CODE, dtype=torch.float32)
    flat = x.reshape(-1)
    n = flat.numel()
    pad = (-n) % BLOCK
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, BLOCK)
    absmax = blocks.abs().amax(dim=1, keepdim=True)
    norm = torch.where(absmax > 0, blocks / absmax.clamp_min(1e-30), torch.zeros_like(blocks))
    # nearest code value (bitsandbytes rounds to the nearest of the 16)
    idx = (norm.unsqueeze(-1) - code).abs().argmin(dim=-1)
    return (code[idx] * absmax).reshape(-1)[:n].reshape(w.shape)


def block_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The decoder blocks' linear layers (peft's base layers; not the adapters, embeddings,
    norms or lm_head): what base_quantization stores quantized."""
    return [(name, mod) for name, mod in model.named_modules()
            if isinstance(mod, nn.Linear) and ".layers." in f".{name}" and "lora_" not in name]


@torch.no_grad()
def quantize_base_(model: nn.Module, method: str) -> int:
    """Fake-quantize every block linear weight of ``model`` in place; the weights quantized."""
    n = 0
    for _, mod in block_linears(model):
        mod.weight.copy_(fake_quantize(mod.weight, method).to(mod.weight.dtype))
        n += mod.weight.numel()
    return n


def downlink_roundtrip(flat: np.ndarray, downlink: Any) -> np.ndarray:
    """The global state as a client receives it under ``downlink`` (int8 / int4 blocks of
    ``block_size`` with scales at ``scale_bytes``; none: unchanged)."""
    if downlink.method == "none":
        return flat
    x = np.asarray(flat, np.float64)
    q, scale = quantize(x, downlink.method, int(downlink.block_size),
                        float(downlink.scale_bytes))
    return dequantize(q, scale, int(downlink.block_size)).astype(flat.dtype, copy=False)
