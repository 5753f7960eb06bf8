"""Pure peak-memory formulas for training a transformer on one device (bytes).

peak = held weights x dtype bytes                       (frozen and trainable)
     + trainable params x dtype bytes                   (gradients)
     + trainable params x optimizer bytes               (Adam, mixed precision: fp32 master
                                                         copy + m + v = 12 B; so full
                                                         fine-tuning costs 16 B/param in bf16)
     + stored layers x activation bytes per layer       (s*b*h*(34 + 5as/h), Korthikanti et al.
                                                         2022, "Reducing Activation
                                                         Recomputation in Large Transformer
                                                         Models", 16-bit activations; measured
                                                         ~45.7*s*b*h for HF Llama in bf16 with
                                                         SDPA; 2*s*b*h with full checkpointing)
     + logits b*s*V*4                                   (fp32 logits; only where the lm_head
                                                         runs on this device)
Sources: shared/reference.md section 3. Optimizer state for SGD is the fp32 master copy (4 B)
plus momentum (4 B) when used.
"""

from __future__ import annotations

from simulator.config.llm import ModelSpec

ADAM_BYTES = 12.0  # fp32 master weights + first and second moments
LLAMA_MEASURED_ACT = 45.7  # bytes per (s*b*h) per layer, HF Llama, bf16, SDPA (reference.md)
CHECKPOINT_ACT = 2.0  # bytes per (s*b*h) per layer kept with full activation checkpointing
LOGIT_BYTES = 4.0


def optimizer_bytes_per_param(optimizer: str, momentum: float = 0.0) -> float:
    """Optimizer state per trainable parameter with mixed precision (fp32 master copy)."""
    if optimizer == "adam":
        return ADAM_BYTES
    return 4.0 + (4.0 if momentum > 0 else 0.0)


def activation_bytes_per_layer(spec: ModelSpec, seq_len: int, batch: int,
                               width_rate: float = 1.0) -> float:
    """Activations one block keeps for its backward pass, 16-bit: s*b*h*(34 + 5as/h).

    Llama uses the measured 45.7*s*b*h (SwiGLU MLP, memory-efficient SDPA: no 5as/h score
    matrix); GPT-2 and BERT use Korthikanti's formula with eager attention scores. Width
    sub-models shrink h (and a) by ``width_rate``, leaving a*s/h unchanged.
    """
    sbh = float(seq_len) * batch * spec.hidden * width_rate
    if spec.family == "llama":
        return LLAMA_MEASURED_ACT * sbh
    return sbh * (34.0 + 5.0 * spec.heads * seq_len / spec.hidden)


def activation_bytes(spec: ModelSpec, layers: int, seq_len: int, batch: int,
                     checkpointing: bool, width_rate: float = 1.0) -> float:
    """Activations of ``layers`` stored blocks. With full checkpointing each block keeps only its
    input (2*s*b*h) and one block at a time is recomputed with its full activations."""
    if layers <= 0:
        return 0.0
    full = activation_bytes_per_layer(spec, seq_len, batch, width_rate)
    if not checkpointing:
        return layers * full
    return layers * CHECKPOINT_ACT * seq_len * batch * spec.hidden * width_rate + full


def logits_bytes(spec: ModelSpec, seq_len: int, batch: int) -> float:
    return float(batch) * seq_len * spec.vocab * LOGIT_BYTES


# Bytes per stored weight of a quantized frozen base (bitsandbytes: 4-bit codes with one fp32
# absmax per block of 64 weights; LLM.int8 rows with a per-row scale, negligible at h >= 1024).
QUANT_BYTES = {"int8": 1.0, "nf4": 0.5 + 4.0 / 64, "fp4": 0.5 + 4.0 / 64}


def quantized_base_saving(spec: ModelSpec, dtype_bytes: float, method: str) -> float:
    """Bytes a quantized frozen base saves against ``dtype_bytes`` storage, less the workspace
    one dequantized layer needs at a time: only block linear layers are quantized (embeddings,
    norms and lm_head stay 16-bit, as bitsandbytes and peft leave them)."""
    if method == "none":
        return 0.0
    q = sum(lin.count * lin.d_in * lin.d_out for lin in spec.linears if lin.in_blocks)
    widest = max((lin.d_in * lin.d_out for lin in spec.linears if lin.in_blocks), default=0)
    return q * (dtype_bytes - QUANT_BYTES[method]) - widest * dtype_bytes


def peak_bytes(held_params: float, trainable_params: float, dtype_bytes: float,
               optimizer_bytes: float, activations: float, logits: float) -> float:
    """Peak training memory (bytes) from the terms above."""
    return (held_params * dtype_bytes + trainable_params * (dtype_bytes + optimizer_bytes)
            + activations + logits)
