"""Transformer specs: meta-device counts vs closed form (shared/reference.md section 3)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from simulator.config.llm import closed_form_spec
from simulator.config.scenario import Model, ScenarioError, parse_scenario
from simulator.planning import llm_cost as C

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from simulator.workloads import llm_spec as S  # noqa: E402 (needs torch: after importorskip)


@pytest.fixture(scope="module", autouse=True)
def _warm_imports() -> None:
    """Import transformers' model classes once, so timings measure counting, not imports."""
    S.model_class("llama")


LLAMA_TOTALS = {"llama-2-7b": 6_738_415_616, "llama-2-13b": 13_015_864_320,
                "llama-2-70b": 68_976_648_192}


def model(**kw: object) -> Model:
    return Model.model_validate({"kind": "transformer", **kw})


@pytest.mark.parametrize("preset,total", sorted(LLAMA_TOTALS.items()))
def test_llama_counts_match_closed_form_quickly(preset: str, total: int) -> None:
    # Prepare
    m = model(preset=preset, seq_len=128)
    S._spec_cached.cache_clear()
    # Execute
    t0 = time.perf_counter()
    spec = S.model_spec(m)
    elapsed = time.perf_counter() - t0
    closed = closed_form_spec(m)
    # Assert: exact counts, FLOPs within 1% of 6N + 12Lsh, under 5 s once imported
    assert spec.total_params == closed.total_params == total
    assert spec.embedding_params == closed.embedding_params == 32000 * closed.hidden
    assert spec.block_params == closed.block_params
    assert spec.non_embedding_params == closed.non_embedding_params
    assert spec.measured_train_flops_per_token == pytest.approx(
        C.full_flops_per_token(closed, 128), rel=0.01)
    assert elapsed < 5.0


def test_spec_is_cached_by_config() -> None:
    m = model(preset="llama-2-7b", seq_len=128)
    a = S.model_spec(m)
    t0 = time.perf_counter()
    cfg = {"hidden_size": 4096, "num_attention_heads": 32, "max_position_embeddings": 4096}
    b = S.model_spec(model(family="llama", config=cfg, seq_len=128))
    assert a is b  # same resolved config JSON -> same cached object
    assert time.perf_counter() - t0 < 0.05


def test_lora_counts_7b_closed_form_and_peft() -> None:
    pytest.importorskip("peft")
    m = model(preset="llama-2-7b")
    spec = closed_form_spec(m)
    assert spec.lora_params(8, ("q_proj", "v_proj")) == 4_194_304
    assert spec.lora_params(8, "all-linear") == 19_988_480
    assert S.peft_lora_params(m, 8, ("q_proj", "v_proj")) == 4_194_304
    assert S.peft_lora_params(m, 8, "all-linear") == 19_988_480
    assert spec.lora_params(8, ("q_proj", "v_proj"), blocks_only=True) * 32 == 4_194_304


@pytest.mark.parametrize("family,total", [("gpt2", 124_439_808), ("bert", 109_514_298)])
def test_gpt2_and_bert_specs_build(family: str, total: int) -> None:
    pytest.importorskip("peft")
    m = model(family=family, seq_len=128)
    t0 = time.perf_counter()
    spec = S.model_spec(m)
    closed = closed_form_spec(m)
    assert time.perf_counter() - t0 < 5.0
    assert spec.total_params == closed.total_params == total  # GPT-2 small, BERT-base
    assert spec.tied_embeddings and closed.tied_embeddings
    assert spec.measured_train_flops_per_token == pytest.approx(
        C.full_flops_per_token(closed, 128), rel=0.02)
    for targets in ("all-linear", closed.target_names()[:2]):
        assert S.peft_lora_params(m, 4, targets) == closed.lora_params(4, targets)


def test_unusual_llama_shapes_gqa_bias_head_dim_tied() -> None:
    cfg = {"hidden_size": 256, "num_hidden_layers": 3, "num_attention_heads": 8,
           "num_key_value_heads": 2, "intermediate_size": 512, "vocab_size": 1000,
           "head_dim": 64, "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True}
    m = model(family="llama", config=cfg, seq_len=64)
    spec, closed = S.model_spec(m), closed_form_spec(m)
    assert spec.total_params == closed.total_params
    assert spec.block_params == closed.block_params
    assert spec.tied_embeddings and closed.tied_embeddings


def test_flop_extrapolation_equals_full_measurement() -> None:
    family, cfg = S.resolved(model(preset="llama-2-7b", seq_len=64))
    small = {**cfg, "num_hidden_layers": 6}
    assert S.measure_flops_extrapolated(family, small, 64) == S.measure_flops(family, small, 64)


def test_lora_and_partial_flops_match_formulas() -> None:
    pytest.importorskip("peft")
    s = 64
    m = model(preset="llama-2-7b", seq_len=s)
    family, cfg = S.resolved(m)
    spec = closed_form_spec(m)
    pl = spec.lora_params(8, ("q_proj", "v_proj"))
    lora = S.measure_flops_extrapolated(family, cfg, s, S.lora_prepare(8, ("q_proj", "v_proj")))
    assert lora / s == pytest.approx(C.lora_flops_per_token(spec, s, pl), rel=0.02)

    # Top-2 of 8 blocks trainable (lower blocks, embedding and lm_head frozen).
    cfg8 = {**cfg, "num_hidden_layers": 8}
    spec8 = closed_form_spec(model(family="llama", config=cfg8, seq_len=s))

    def top2(mod: torch.nn.Module) -> torch.nn.Module:
        for p in mod.parameters():
            p.requires_grad_(False)
        for blk in mod.model.layers[-2:]:
            for p in blk.parameters():
                p.requires_grad_(True)
        return mod

    partial = S.measure_flops(family, cfg8, s, top2)
    assert partial / s == pytest.approx(C.partial_flops_per_token(spec8, s, 2), rel=0.01)


def test_config_path_file_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                             "vocab_size": 300, "n_positions": 128, "architectures": ["X"]}))
    m = model(config_path=str(p), seq_len=32)
    spec = S.model_spec(m)
    assert spec.family == "gpt2" and spec.num_layers == 2 and spec.hidden == 64
    assert spec.total_params == closed_form_spec(m).total_params


def _scenario(model_block: dict) -> None:
    parse_scenario({"name": "t", "population": {"size": 10, "mix": [{"profile": "cloud-a100",
                                                                     "share": 1.0}]},
                    "rounds": 1, "clients_per_round": 1, "model": model_block})


@pytest.mark.parametrize("block,needle", [
    ({"kind": "transformer", "family": "t5"}, "model.family: got 't5'"),
    ({"kind": "transformer", "preset": "llama-9"}, "model.preset: got 'llama-9'"),
    ({"kind": "transformer"}, "model.family: required"),
    ({"kind": "transformer", "family": "llama", "config": {"hidden_size": 0}},
     "model.config.hidden_size: must be an integer"),
    ({"kind": "transformer", "family": "llama", "config": {"num_attention_heads": 7}},
     "model.config.num_attention_heads: 7 does not divide"),
    ({"kind": "transformer", "family": "llama", "config": {"hiddensize": 8}},
     "model.config.hiddensize: unknown key"),
    ({"kind": "transformer", "family": "llama", "config_path": "/no/such.json"},
     "model.config_path: file not found"),
    ({"kind": "transformer", "preset": "llama-2-7b", "family": "bert"}, "conflicts with preset"),
    ({"kind": "transformer", "preset": "tiny-llama", "seq_len": 4096}, "model.seq_len: 4096"),
    ({"kind": "transformer", "preset": "llama-2-7b", "workloads": {"lora_targets": ["c_attn"]}},
     "model.workloads.lora_targets: 'c_attn'"),
    ({"kind": "mlp", "preset": "llama-2-7b"}, "only for kind 'transformer'"),
])
def test_invalid_model_blocks_give_one_line(block: dict, needle: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        _scenario(block)
    assert len(ei.value.lines) == 1 and needle in ei.value.lines[0]
