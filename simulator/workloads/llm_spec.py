"""Measure a transformer's shapes with transformers on torch's ``meta`` device (no weights).

``model_spec(model_cfg)`` builds LlamaForCausalLM / GPT2LMHeadModel / BertForMaskedLM from the
scenario's resolved config under ``torch.device("meta")`` (parameters get shapes but no storage,
so Llama-2-70B builds in ~0.2 s), counts parameters, and measures training FLOPs per token with
``torch.utils.flop_counter.FlopCounterMode`` on a meta forward + backward. Results are plain
numbers in a :class:`~simulator.config.llm.ModelSpec`, cached per config JSON.

The planner uses the closed-form spec (planning.llm_config) so analytic runs never import torch;
tests/test_llm_spec.py checks that both agree (shared/reference.md section 3 lists the counts:
Llama-2-7B 6,738,415,616; 13B 13,015,864,320; 70B 68,976,648,192).

FLOPs are measured on 1- and 2-block copies of the model and extrapolated linearly to L blocks:
blocks are identical, so flops(L) = flops(1) + (L - 1) * (flops(2) - flops(1)) exactly, and a
70B measurement takes ~0.1 s instead of ~3 s.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from simulator import InputError
from simulator.config.llm import (
    ModelSpec,
    check_shapes,
    normalised,
    resolve_config,
    spec_from_config,
)

_DROP = ("model_type", "architectures", "transformers_version", "torch_dtype", "dtype")
_GPT2_NAMES = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer",
               "num_attention_heads": "n_head", "intermediate_size": "n_inner",
               "max_position_embeddings": "n_positions"}
FLOP_SEQ_LEN = 128  # tokens per sequence in the FLOP measurement (capped by seq_len)


def _as_model(model_cfg: Any) -> Any:
    if isinstance(model_cfg, dict):
        from simulator.config.scenario import Model

        return Model.model_validate({"kind": "transformer", **model_cfg})
    return model_cfg


def resolved(model_cfg: Any) -> tuple[str, dict[str, Any]]:
    """(family, canonical config) of a scenario ``model`` block or an equivalent dict."""
    m = _as_model(model_cfg)
    family, cfg, problems = resolve_config(m)
    problems = problems or check_shapes(family, cfg, m.seq_len)
    if problems:
        field, _, msg = problems[0].partition(": ")
        raise InputError(field, msg)
    return family, normalised(family, cfg)


def hf_config(family: str, cfg: dict[str, Any]) -> Any:
    """A transformers config object for the canonical ``cfg`` (None values left to defaults)."""
    from transformers import BertConfig, GPT2Config, LlamaConfig

    kw = {k: v for k, v in cfg.items() if v is not None and k not in _DROP}
    if family == "llama":
        return LlamaConfig(**kw)
    if family == "gpt2":
        return GPT2Config(**{_GPT2_NAMES.get(k, k): v for k, v in kw.items()})
    return BertConfig(**kw)


def model_class(family: str) -> type:
    from transformers import BertForMaskedLM, GPT2LMHeadModel, LlamaForCausalLM

    return {"llama": LlamaForCausalLM, "gpt2": GPT2LMHeadModel, "bert": BertForMaskedLM}[family]


def build_meta_model(family: str, cfg: dict[str, Any]) -> nn.Module:
    """The model with shapes only (``meta`` tensors): nothing is allocated or initialised."""
    with torch.device("meta"):
        return model_class(family)(hf_config(family, cfg))


def _blocks(model: nn.Module, n_layers: int) -> nn.ModuleList:
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n_layers:
            return mod
    raise RuntimeError("no ModuleList of transformer blocks found")  # pragma: no cover


def count_params(model: nn.Module, n_layers: int) -> dict[str, int]:
    """Unique parameter counts: total, input embeddings, one block, lm_head matmul, tying."""
    total = sum(p.numel() for p in model.parameters())  # parameters() skips tied duplicates
    seen: set[int] = set()
    emb = 0
    out_w = model.get_output_embeddings().weight  # type: ignore[operator]
    for mod in model.modules():
        if isinstance(mod, nn.Embedding) and id(mod.weight) not in seen:
            seen.add(id(mod.weight))
            emb += mod.weight.numel()
    block = sum(p.numel() for p in _blocks(model, n_layers)[0].parameters())
    tied = out_w is model.get_input_embeddings().weight  # type: ignore[operator]
    return {"total": total, "embedding": emb, "block": block, "lm_head": out_w.numel(),
            "tied": int(tied)}


def measure_flops(family: str, cfg: dict[str, Any], seq_len: int,
                  prepare: Callable[[nn.Module], nn.Module] | None = None) -> float:
    """FLOPs of one forward + backward of one sequence (batch 1) on the meta device.

    ``prepare`` may freeze parameters or wrap the model (e.g. peft) before the pass; autograd
    then skips the weight gradients of frozen parameters, as real training would.
    """
    model = build_meta_model(family, cfg)
    if prepare is not None:
        model = prepare(model)
    ids = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(input_ids=ids)
        out.logits.float().sum().backward()
    return float(counter.get_total_flops())


def measure_flops_extrapolated(family: str, cfg: dict[str, Any], seq_len: int,
                               prepare: Callable[[nn.Module], nn.Module] | None = None) -> float:
    """:func:`measure_flops` for L blocks from 1- and 2-block copies (exact for equal blocks)."""
    L = cfg["num_hidden_layers"]
    f1 = measure_flops(family, {**cfg, "num_hidden_layers": 1}, seq_len, prepare)
    if L == 1:
        return f1
    f2 = measure_flops(family, {**cfg, "num_hidden_layers": 2}, seq_len, prepare)
    return f1 + (L - 1) * (f2 - f1)


def lora_prepare(rank: int, targets: tuple[str, ...] | str) -> Callable[[nn.Module], nn.Module]:
    """Wrap with peft LoRA (frozen base, adapters trainable); works on meta models."""
    def prep(model: nn.Module) -> nn.Module:
        from peft import LoraConfig, get_peft_model

        tm = targets if targets == "all-linear" else list(targets)
        return get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=tm,
                                                lora_dropout=0.0))
    return prep


def peft_lora_params(model_cfg: Any, rank: int, targets: tuple[str, ...] | str) -> int:
    """Trainable parameters after ``peft.get_peft_model`` on the meta model (cross-check of
    ``ModelSpec.lora_params``)."""
    family, cfg = resolved(model_cfg)
    model = lora_prepare(rank, targets)(build_meta_model(family, cfg))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@lru_cache(maxsize=64)
def _spec_cached(family: str, cfg_json: str, seq_len: int) -> ModelSpec:
    cfg = json.loads(cfg_json)
    closed = spec_from_config(family, cfg)
    counts = count_params(build_meta_model(family, cfg), cfg["num_hidden_layers"])
    flops = measure_flops_extrapolated(family, cfg, seq_len)
    return dataclasses.replace(
        closed, total_params=counts["total"], embedding_params=counts["embedding"],
        block_params=counts["block"], lm_head_matmul_params=counts["lm_head"],
        tied_embeddings=bool(counts["tied"]), measured_train_flops_per_token=flops / seq_len,
        measured_at_seq_len=seq_len)


def model_spec(model_cfg: Any, flop_seq_len: int | None = None) -> ModelSpec:
    """Measured :class:`ModelSpec` of a scenario ``model`` block (or dict of its fields).

    Parameter counts come from the meta model; training FLOPs per token (full fine-tuning) from
    FlopCounterMode at ``flop_seq_len`` tokens (default min(seq_len, 128)); LoRA layer shapes
    from the closed form (verified against peft by :func:`peft_lora_params`).
    """
    m = _as_model(model_cfg)
    family, cfg = resolved(m)
    seq = flop_seq_len or min(m.seq_len, FLOP_SEQ_LEN)
    return _spec_cached(family, json.dumps(cfg, sort_keys=True), seq)
