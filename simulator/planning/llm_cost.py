"""Pure FLOP and byte formulas for training a transformer (shared/reference.md section 3).

Notation: N non-embedding parameters (lm_head included), L layers, h hidden (attention width
a*head_dim where it differs), s sequence length, P_lora LoRA parameters, k trainable top blocks,
c split cut, p width rate. All FLOP figures are *per training token*; multiply by the tokens a
client processes in a round (sequences x seq_len x epochs).

- forward                    2N + 4Lsh                                  (Kaplan et al. 2020)
- full fine-tuning           6N + 12Lsh                                  (measured 6.49N @ s=2048)
- LoRA, frozen base          4N + 12Lsh + 6 P_lora                      (measured 4.49N)
- top-k blocks trainable     2N + 4Lsh + 2Vh + (k/L)(4 N_layers + 8Lsh) (derived: backward stops
                                                                          at the lowest trainable
                                                                          block; 2Vh is the
                                                                          lm_head input gradient,
                                                                          5% of the 7B total at
                                                                          k=2 of 8, measured)
- split, client part [0, c)  (6 or 4) c*P_block + 12 c s h (+ 6 P_lora,client)
- width rate p (HeteroFL)    hidden-to-hidden params x p^2, vocab projections x p, attention x p
Matches torch's FlopCounterMode on the meta device within ~1% (tests/test_llm_spec.py).
"""

from __future__ import annotations

import numpy as np

from simulator.config.llm import ModelSpec


def forward_flops_per_token(spec: ModelSpec, seq_len: int) -> float:
    return 2.0 * spec.non_embedding_params + 4.0 * spec.num_layers * seq_len * spec.attn_width


def full_flops_per_token(spec: ModelSpec, seq_len: int) -> float:
    """Full fine-tuning: forward + backward (weight and input gradients) = 3 x forward."""
    return 6.0 * spec.non_embedding_params + 12.0 * spec.num_layers * seq_len * spec.attn_width


def lora_flops_per_token(spec: ModelSpec, seq_len: int, lora_params: int) -> float:
    """Frozen base: no weight gradients for the base (4N), adapters trained fully (6 P_lora)."""
    return (4.0 * spec.non_embedding_params + 12.0 * spec.num_layers * seq_len * spec.attn_width
            + 6.0 * lora_params)


def partial_flops_per_token(spec: ModelSpec, seq_len: int, blocks: int) -> float:
    """Top ``blocks`` of L trainable: forward everywhere, the gradient through the (frozen)
    lm_head into the top block, backward through the top blocks only."""
    L, sh = spec.num_layers, seq_len * spec.attn_width
    return (forward_flops_per_token(spec, seq_len) + 2.0 * spec.lm_head_matmul_params
            + (blocks / L) * (4.0 * spec.layer_params + 8.0 * L * sh))


def split_client_flops_per_token(spec: ModelSpec, seq_len: int, cut: int, lora_params: int,
                                 train: str) -> float:
    """Client side of split learning: blocks [0, cut) forward and backward (embedding lookup is
    free). ``train`` "full" trains the client blocks; "lora" trains ``lora_params`` adapters."""
    base = cut * spec.block_params
    attn = 12.0 * cut * seq_len * spec.attn_width
    if train == "full":
        return 6.0 * base + attn
    return 4.0 * base + attn + 6.0 * lora_params


def split_server_flops_per_token(spec: ModelSpec, seq_len: int, cut: int, lora_params: int,
                                 train: str) -> float:
    """Server side: blocks [cut, L), final norm and lm_head, trained like the client part."""
    rest = spec.non_embedding_params - cut * spec.block_params
    attn = 12.0 * (spec.num_layers - cut) * seq_len * spec.attn_width
    return (6.0 if train == "full" else 4.0) * rest + attn + (6.0 * lora_params if train == "lora"
                                                               else 0.0)


def recompute_flops_per_token(spec: ModelSpec, seq_len: int, layers: int,
                              width_rate: float = 1.0) -> float:
    """Extra forward of ``layers`` checkpointed blocks during backward (activation
    checkpointing trades this compute for memory; Chen et al. 2016)."""
    p = float(width_rate)
    return 2.0 * p * p * layers * spec.block_params + 4.0 * layers * seq_len * spec.attn_width * p


def width_params(spec: ModelSpec, rate: float) -> float:
    """Parameters of a HeteroFL/FjORD sub-model at width ``rate``: block matrices shrink in both
    dimensions (p^2), embeddings and lm_head in one (p). Norm and bias terms are folded into the
    p^2 part (a <0.1% error for real models)."""
    p = float(rate)
    head = 0 if spec.tied_embeddings else spec.lm_head_matmul_params
    rest = spec.total_params - spec.embedding_params - head
    return p * p * rest + p * (spec.embedding_params + head)


def width_flops_per_token(spec: ModelSpec, seq_len: int, rate: float) -> float:
    p = float(rate)
    n = p * p * (spec.non_embedding_params - spec.lm_head_matmul_params)
    n += p * spec.lm_head_matmul_params
    return 6.0 * n + 12.0 * spec.num_layers * seq_len * spec.attn_width * p


def upload_bytes(elements: float | np.ndarray, dtype_bytes: float, compression: object
                 ) -> float | np.ndarray:
    """Bytes to upload ``elements`` update values under ``compression`` (scenario Compression).

    none: elements*dtype; int8/int4: elements*{1, 0.5} + ceil(elements/block)*scale_bytes
    (block-wise absmax scales, as bitsandbytes/QLoRA); topk: k*(value + index bytes) with
    k = ceil(fraction*elements) (sparse (value, index) pairs; beats dense fp16 only below ~1/3
    density, shared/reference.md section 3).
    """
    method = getattr(compression, "method", "none")
    e = np.asarray(elements, np.float64)
    if method == "none":
        out = e * dtype_bytes
    elif method in ("int8", "int4"):
        per = 1.0 if method == "int8" else 0.5
        c = compression
        out = e * per + np.ceil(e / c.block_size) * c.scale_bytes  # type: ignore[attr-defined]
    elif method == "topk":
        c = compression
        k = np.ceil(e * c.topk_fraction)  # type: ignore[attr-defined]
        out = k * (dtype_bytes + c.index_bytes)  # type: ignore[attr-defined]
    else:  # pragma: no cover - the scenario schema restricts the methods
        raise ValueError(f"unknown compression {method!r}")
    return float(out) if out.ndim == 0 else out


def split_step_bytes(spec: ModelSpec, seq_len: int, batch: int, dtype_bytes: float) -> float:
    """Activations sent up (and their gradients sent down) per split step: b*s*h*bytes."""
    return float(batch) * seq_len * spec.hidden * dtype_bytes


def steps_per_round(n_sequences: np.ndarray, batch: int, epochs: int) -> np.ndarray:
    """Optimizer steps a client takes: ceil(sequences/batch) per epoch."""
    return np.ceil(np.asarray(n_sequences, np.float64) / batch) * epochs


def auto_split_cuts(num_layers: int) -> tuple[int, ...]:
    """Every possible cut 1..L-1 (the client always keeps at least one block, the server one)."""
    return tuple(range(1, max(num_layers, 2)))
