"""Transformer shapes without torch: presets, config resolution, validation, closed-form counts.

``resolve_config(model)`` merges ``preset`` < ``config_path`` (a local transformers JSON file) <
inline ``config`` into one dict of canonical keys; ``closed_form_spec(model)`` counts parameters
and adaptable linear layers from that dict with the formulas below, so the planner and analytic
runs never build a model. ``simulator.workloads.llm_spec`` builds the same models on torch's
``meta`` device and the tests check both agree exactly (Llama-2-7B = 6,738,415,616 parameters,
shared/reference.md section 3).

Per-block parameter counts (HF transformers 4.x/5.x module layouts):
  llama: q (h x a*d), k, v (h x kv*d), o (a*d x h), gate, up (h x I), down (I x h), 2 RMSNorm (h)
  gpt2:  c_attn (h x 3h + 3h), attn c_proj (h x h + h), c_fc (h x I + I), mlp c_proj (I x h + h),
         2 LayerNorm (2h)
  bert:  query, key, value, attention.output.dense (h x h + h), intermediate.dense (h x I + I),
         output.dense (I x h + h), 2 LayerNorm (2h)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = ("llama", "gpt2", "bert")

# Published configs (huggingface.co/meta-llama/Llama-2-*-hf config.json; TinyLlama/TinyLlama-1.1B).
# "tiny-llama" is FedFleet's CPU-trainable toy (byte vocabulary), not a published model.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama-2-7b": ("llama", {
        "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "intermediate_size": 11008, "vocab_size": 32000,
        "max_position_embeddings": 4096}),
    # Mistral-7B v0.1/v0.3 (config.json on the Hugging Face hub): a Llama block with grouped-query
    # attention (8 KV heads); v0.3 has a 32768 vocabulary, v0.1 32000. FlowerTune's base model.
    "mistral-7b": ("llama", {
        "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32768,
        "max_position_embeddings": 32768}),
    "llama-2-13b": ("llama", {
        "hidden_size": 5120, "num_hidden_layers": 40, "num_attention_heads": 40,
        "num_key_value_heads": 40, "intermediate_size": 13824, "vocab_size": 32000,
        "max_position_embeddings": 4096}),
    "llama-2-70b": ("llama", {
        "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
        "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 32000,
        "max_position_embeddings": 4096}),
    "tinyllama-1.1b": ("llama", {
        "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
        "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000,
        "max_position_embeddings": 2048}),
    "tiny-llama": ("llama", {
        "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 176, "vocab_size": 256,
        "max_position_embeddings": 256}),
}

# transformers' own defaults for the keys we count (LlamaConfig, GPT2Config, BertConfig).
DEFAULTS: dict[str, dict[str, Any]] = {
    "llama": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": None, "intermediate_size": 11008, "vocab_size": 32000,
              "max_position_embeddings": 2048, "tie_word_embeddings": False, "head_dim": None,
              "attention_bias": False, "mlp_bias": False},
    "gpt2": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": None, "vocab_size": 50257, "max_position_embeddings": 1024,
             "tie_word_embeddings": True},
    "bert": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "vocab_size": 30522, "max_position_embeddings": 512,
             "type_vocab_size": 2, "tie_word_embeddings": True},
}
# GPT-2's own names for the canonical keys.
ALIASES = {"n_embd": "hidden_size", "n_layer": "num_hidden_layers", "n_head": "num_attention_heads",
           "n_inner": "intermediate_size", "n_positions": "max_position_embeddings"}
# Keys that do not change shapes: passed to transformers as they are, ignored by the counts.
PASSTHROUGH = frozenset({
    "rope_theta", "rope_scaling", "rms_norm_eps", "hidden_act", "initializer_range",
    "attention_dropout", "pretraining_tp", "use_cache", "pad_token_id", "bos_token_id",
    "eos_token_id", "layer_norm_eps", "layer_norm_epsilon", "hidden_dropout_prob",
    "attention_probs_dropout_prob", "resid_pdrop", "embd_pdrop", "attn_pdrop",
    "activation_function", "position_embedding_type", "model_type", "architectures",
    "torch_dtype", "dtype", "transformers_version", "n_ctx", "classifier_dropout",
})
LIMITS = {"hidden_size": 65536, "num_hidden_layers": 1024, "num_attention_heads": 1024,
          "num_key_value_heads": 1024, "intermediate_size": 1 << 20, "vocab_size": 10_000_000,
          "max_position_embeddings": 10_000_000, "head_dim": 4096, "type_vocab_size": 1024}
BOOL_KEYS = ("tie_word_embeddings", "attention_bias", "mlp_bias")


def structural_keys(family: str) -> tuple[str, ...]:
    return tuple(DEFAULTS[family])


@dataclass(frozen=True)
class Linear:
    """One adaptable matrix kind: ``count`` instances of a ``d_in x d_out`` linear layer."""

    name: str  # module-name suffix as peft matches it (q_proj, c_attn, dense, ...)
    d_in: int
    d_out: int
    count: int
    in_blocks: bool  # one instance per transformer block
    is_output: bool = False  # lm_head / decoder: excluded from peft's "all-linear"


@dataclass(frozen=True)
class ModelSpec:
    """Plain numbers describing a transformer (no torch objects; usable by the pure core)."""

    family: str
    num_layers: int  # L
    hidden: int  # h
    heads: int  # a
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int  # V
    max_positions: int
    tied_embeddings: bool
    total_params: int  # unique parameters (tied matrices once)
    embedding_params: int  # input lookup tables: token (+ position, token type)
    block_params: int  # one transformer block
    lm_head_matmul_params: int  # V*h of the output projection, counted in N even when tied
    linears: tuple[Linear, ...]
    measured_train_flops_per_token: float | None = None  # FlopCounterMode, full fine-tuning
    measured_at_seq_len: int = 0

    @property
    def layer_params(self) -> int:
        """Parameters in all L blocks (N_layers)."""
        return self.num_layers * self.block_params

    @property
    def non_embedding_params(self) -> int:
        """N of the FLOP formulas: everything but input lookup tables, lm_head included."""
        tied_extra = self.lm_head_matmul_params if self.tied_embeddings else 0
        return self.total_params - self.embedding_params + tied_extra

    @property
    def attn_width(self) -> int:
        """Width of the attention scores/values product (a * head_dim; h for most models)."""
        return self.heads * self.head_dim

    def target_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(lin.name for lin in self.linears))

    def lora_params(self, rank: int, targets: tuple[str, ...] | str, blocks_only: bool = False
                    ) -> int:
        """LoRA parameters: sum over adapted matrices of ``rank * (d_in + d_out)`` (Hu et al. 2021).

        ``targets`` are module-name suffixes (peft semantics) or "all-linear" (every linear
        layer except the output projection). ``blocks_only`` counts one block's adapters.
        """
        total = 0
        for lin in self.linears:
            hit = not lin.is_output if targets == "all-linear" else lin.name in targets
            if not hit or (blocks_only and not lin.in_blocks):
                continue
            total += rank * (lin.d_in + lin.d_out) * (1 if blocks_only else lin.count)
        return total


def read_config_file(path: str) -> dict[str, Any]:
    """A transformers ``config.json``; raises ValueError with a one-line reason."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"file not found: '{path}'")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a readable JSON config: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise ValueError("a config file must hold a JSON object")  # noqa: TRY004 (one-line msg)
    return doc


def _canonical(d: dict[str, Any]) -> dict[str, Any]:
    return {ALIASES.get(k, k): v for k, v in d.items()}


def resolve_config(model: Any) -> tuple[str, dict[str, Any], list[str]]:
    """(family, canonical config, problems) for a ``model.kind == "transformer"`` block.

    Later sources win: family defaults < preset < config_path file < inline config. Unknown
    inline keys are problems (typo guard); unknown keys from a file are kept and passed on.
    """
    problems: list[str] = []
    family = model.family
    merged: dict[str, Any] = {}
    if model.preset is not None:
        pfam, pcfg = PRESETS[model.preset]
        if family is not None and family != pfam:
            problems.append(f"model.family: '{family}' conflicts with preset "
                            f"'{model.preset}' (a {pfam} model)")
        family = family or pfam
        merged.update(pcfg)
    if model.config_path is not None:
        try:
            filed = _canonical(read_config_file(model.config_path))
        except ValueError as exc:
            return family or "llama", merged, [f"model.config_path: {exc}"]
        mtype = filed.get("model_type")
        if family is None and mtype in FAMILIES:
            family = mtype
        elif mtype is not None and family is not None and mtype != family:
            problems.append(f"model.config_path: model_type '{mtype}' does not match family "
                            f"'{family}'")
        merged.update(filed)
    if family is None:
        problems.append("model.family: required for kind 'transformer' unless a preset or a "
                        "config_path with model_type is given (allowed: llama, gpt2, bert)")
        return "llama", merged, problems
    inline = _canonical(dict(model.config or {}))
    for k in inline:
        if k not in DEFAULTS[family] and k not in PASSTHROUGH:
            problems.append(f"model.config.{k}: unknown key for {family} (shape keys: "
                            f"{', '.join(structural_keys(family))})")
    merged.update(inline)
    full = dict(DEFAULTS[family])
    full.update(merged)
    return family, full, problems


def check_shapes(family: str, cfg: dict[str, Any], seq_len: int) -> list[str]:
    """One line per nonsensical size, naming ``model.config.<key>``."""
    out: list[str] = []
    for k, hi in LIMITS.items():
        v = cfg.get(k)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            out.append(f"model.config.{k}: must be an integer in [1, {hi}] (got {v!r})")
    for k in BOOL_KEYS:
        if k in cfg and not isinstance(cfg[k], bool):
            out.append(f"model.config.{k}: must be true or false (got {cfg[k]!r})")
    if out:
        return out
    h, a = cfg["hidden_size"], cfg["num_attention_heads"]
    if cfg.get("head_dim") is None and h % a:
        out.append(f"model.config.num_attention_heads: {a} does not divide hidden_size {h}")
    kv = cfg.get("num_key_value_heads")
    if kv is not None and a % kv and not out:  # one root cause, one line
        out.append(f"model.config.num_key_value_heads: {kv} does not divide "
                   f"num_attention_heads {a}")
    if seq_len > cfg["max_position_embeddings"]:
        out.append(f"model.seq_len: {seq_len} exceeds the model's max_position_embeddings "
                   f"({cfg['max_position_embeddings']})")
    return out


def normalised(family: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Fill derived defaults (kv heads = heads, head_dim = h/a, GPT-2 inner = 4h) so equal
    models have equal configs (the cache key of ``workloads.llm_spec.model_spec``)."""
    out = dict(cfg)
    if family == "llama":
        out["num_key_value_heads"] = out.get("num_key_value_heads") or out["num_attention_heads"]
        out["head_dim"] = out.get("head_dim") or out["hidden_size"] // out["num_attention_heads"]
    if family == "gpt2":
        out["intermediate_size"] = out.get("intermediate_size") or 4 * out["hidden_size"]
    return out


def _linears(family: str, c: dict[str, Any]) -> tuple[tuple[Linear, ...], int, int, int]:
    """(linears, block params, embedding params, other params outside blocks)."""
    h, L, a, V = c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"], c["vocab_size"]
    P = c["max_position_embeddings"]
    lin: tuple[Linear, ...]
    if family == "llama":
        d = c.get("head_dim") or h // a
        kv = c.get("num_key_value_heads") or a
        inter = c["intermediate_size"]
        lin = (Linear("q_proj", h, a * d, L, True), Linear("k_proj", h, kv * d, L, True),
               Linear("v_proj", h, kv * d, L, True), Linear("o_proj", a * d, h, L, True),
               Linear("gate_proj", h, inter, L, True), Linear("up_proj", h, inter, L, True),
               Linear("down_proj", inter, h, L, True), Linear("lm_head", h, V, 1, False, True))
        ab = (a * d + 2 * kv * d + h) if c.get("attention_bias") else 0
        mb = (2 * inter + h) if c.get("mlp_bias") else 0
        block = sum(x.d_in * x.d_out for x in lin[:7]) + ab + mb + 2 * h
        emb = V * h
        other = h + (0 if c.get("tie_word_embeddings") else V * h)
    elif family == "gpt2":
        inter = c.get("intermediate_size") or 4 * h
        lin = (Linear("c_attn", h, 3 * h, L, True), Linear("c_proj", h, h, L, True),
               Linear("c_fc", h, inter, L, True), Linear("c_proj", inter, h, L, True),
               Linear("lm_head", h, V, 1, False, True))
        block = (h * 3 * h + 3 * h) + (h * h + h) + (h * inter + inter) + (inter * h + h) + 4 * h
        emb = V * h + P * h
        other = 2 * h + (0 if c.get("tie_word_embeddings", True) else V * h)
    else:  # bert (BertForMaskedLM: no pooler; prediction head transform + decoder)
        inter = c["intermediate_size"]
        lin = (Linear("query", h, h, L, True), Linear("key", h, h, L, True),
               Linear("value", h, h, L, True), Linear("dense", h, h, L, True),
               Linear("dense", h, inter, L, True), Linear("dense", inter, h, L, True),
               Linear("dense", h, h, 1, False), Linear("decoder", h, V, 1, False, True))
        block = 4 * (h * h + h) + (h * inter + inter) + (inter * h + h) + 4 * h
        emb = V * h + P * h + c.get("type_vocab_size", 2) * h
        other = 2 * h + (h * h + h) + 2 * h + V + (0 if c.get("tie_word_embeddings", True)
                                                  else V * h)
    return lin, block, emb, other


def spec_from_config(family: str, cfg: dict[str, Any]) -> ModelSpec:
    """Closed-form :class:`ModelSpec` from a resolved canonical config."""
    lin, block, emb, other = _linears(family, cfg)
    h, L, a = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]
    inter = cfg.get("intermediate_size") or 4 * h
    tied = bool(cfg.get("tie_word_embeddings", family != "llama"))
    return ModelSpec(
        family=family, num_layers=L, hidden=h, heads=a,
        kv_heads=cfg.get("num_key_value_heads") or a,
        head_dim=cfg.get("head_dim") or h // a, intermediate=inter, vocab=cfg["vocab_size"],
        max_positions=cfg["max_position_embeddings"], tied_embeddings=tied,
        total_params=emb + L * block + other, embedding_params=emb, block_params=block,
        lm_head_matmul_params=cfg["vocab_size"] * h, linears=lin,
    )


def closed_form_spec(model: Any) -> ModelSpec:
    """Spec of a validated ``model`` block (scenario validation already reported problems)."""
    family, cfg, problems = resolve_config(model)
    problems += check_shapes(family, cfg, model.seq_len) if not problems else []
    if problems:
        from simulator import InputError

        field, _, msg = problems[0].partition(": ")
        raise InputError(field, msg)
    return spec_from_config(family, cfg)


def check_model(model: Any) -> list[str]:
    """Scenario-level checks of a transformer model block (one line per problem)."""
    family, cfg, problems = resolve_config(model)
    if problems:
        return problems
    problems = check_shapes(family, cfg, model.seq_len)
    if problems:
        return problems
    spec = spec_from_config(family, cfg)
    w = model.workloads
    names = spec.target_names()
    if w.lora_targets is not None and w.lora_targets != "all-linear":
        for t in w.lora_targets:
            if t not in names:
                problems.append(f"model.workloads.lora_targets: '{t}' is not a linear layer of "
                                f"{family} (allowed: {', '.join(names)}, all-linear)")
    L = spec.num_layers
    explicit = "partial_blocks" in w.model_fields_set  # defaults above L are just dropped
    if "partial" in w.order and explicit and any(k > L for k in w.partial_blocks):
        problems.append(f"model.workloads.partial_blocks: values must be <= the model's "
                        f"{L} layers (got {max(w.partial_blocks)})")
    if "split" in w.order and w.split_cuts != "auto" and any(c >= L for c in w.split_cuts):
        problems.append(f"model.workloads.split_cuts: cuts must be in [1, {L - 1}] "
                        f"(the model has {L} layers; got {max(w.split_cuts)})")
    if "split" in w.order and L < 2:
        problems.append("model.workloads.order: 'split' needs a model with at least 2 layers")
    return problems
