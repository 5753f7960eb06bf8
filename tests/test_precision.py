"""Separate precisions (issue 18 item 1; docs/large-models.md 'Precisions'): base storage,
activation dtype and update dtype each move only what they own. Figures hand-computed from the
Llama-2-7B shape (h 4096, 32 layers, MLP 11008, 32000 vocabulary)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from simulator.config.scenario import load_scenario, parse_scenario
from simulator.planning.capability import CapabilityPlanner

H, L, F, V = 4096, 32, 11008, 32000
TOTAL = 6_738_415_616  # Llama-2-7B parameters
QUANT = L * (4 * H * H + 3 * H * F)  # q, k, v, o, gate, up, down of every block
OTHER = TOTAL - QUANT  # embeddings, lm_head, norms: stay 16-bit
ADAPTERS = L * 2 * 8 * (H + H)  # rank 8 on q_proj and v_proj


def scenario(**workloads: object) -> object:
    return parse_scenario({
        "name": "p", "mode": "analytic", "seed": 1,
        "population": {"size": 10, "mix": [{"profile": "cloud-a100", "share": 1.0}]},
        "rounds": 1, "clients_per_round": 1, "deadline_s": 3600,
        "training": {"batch_size": 1, "optimizer": "adam"},
        "model": {"kind": "transformer", "preset": "llama-2-7b", "seq_len": 512,
                  "dtype_bytes": 2, "workloads": {
                      "order": ["lora"], "lora_ranks": [8], "lora_targets": ["q_proj", "v_proj"],
                      "activation_checkpointing": True, **workloads}}})


def test_4bit_base_lora_client_memory_and_bytes_by_hand() -> None:
    assert QUANT == 6_476_005_376 and ADAPTERS == 4_194_304
    opt = CapabilityPlanner(scenario(base_quantization="nf4")).options[0]
    s, b = 512, 1
    weights = OTHER * 2 + QUANT * (0.5 + 4 / 64) + H * F * 2  # + one dequantized down_proj
    adapters = ADAPTERS * (2 + 2 + 12)  # bf16 weights and grads, fp32 master + Adam moments
    acts = L * 2 * s * b * H + 45.7 * s * b * H  # checkpointed inputs + one block live
    logits = b * s * V * 4
    assert opt.base_quant == "nf4"
    assert opt.memory_bytes == pytest.approx(weights + adapters + acts + logits, rel=1e-12)
    assert opt.memory_bytes / 1e9 == pytest.approx(4.620, abs=1e-3)
    # bytes follow the update dtype (bf16 adapters), never the 4-bit base: cached base, so
    # only the adapters go down; they come back up at 2 bytes each
    assert opt.download_bytes == ADAPTERS * 2 == 8_388_608
    assert opt.upload_bytes == ADAPTERS * 2
    # FLOPs: the 16-bit LoRA step plus dequantizing every quantized weight 3 times a step
    # (forward, backward, recompute), 2 FLOPs a weight, over 512 tokens a step
    bf16 = CapabilityPlanner(scenario()).options[0]
    assert opt.flops_per_token - bf16.flops_per_token == pytest.approx(2 * QUANT * 3 / 512)
    # fp32 adapters: memory and both directions at 4 bytes, base untouched
    f32 = CapabilityPlanner(scenario(base_quantization="nf4", update_dtype_bytes=4)).options[0]
    assert f32.download_bytes == f32.upload_bytes == ADAPTERS * 4
    assert f32.memory_bytes - opt.memory_bytes == pytest.approx(ADAPTERS * 2 * 2)


def test_defaults_reproduce_the_single_dtype() -> None:
    """Unset fields: the update dtype is model.dtype_bytes; the activation formulas are 16-bit."""
    a = CapabilityPlanner(scenario()).options[0]
    b = CapabilityPlanner(scenario(update_dtype_bytes=2, activation_dtype_bytes=2)).options[0]
    assert a == b


def test_activation_dtype_moves_split_traffic_and_activations_only() -> None:
    """A 4-bit ``dtype_bytes`` used to make split activations 4-bit too; the activation dtype
    keeps them at 2 bytes (b*s*h*2 per step each way)."""
    def split(**kw: object) -> object:
        sc = scenario(order=["split"], split_cuts=[2], **kw)
        return CapabilityPlanner(sc).options[0]
    plain = split()
    assert plain.step_bytes == 512 * H * 2
    fp32 = split(activation_dtype_bytes=4)
    assert fp32.step_bytes == 512 * H * 4
    assert fp32.download_bytes == plain.download_bytes  # adapters: the update dtype


def test_auto_picks_a_quantized_base_only_where_it_makes_lora_fit() -> None:
    """Options per rank in base_quantization's order; a device takes the first that fits."""
    sc = scenario(base_quantization="auto")
    pl = CapabilityPlanner(sc)
    assert [o.base_quant for o in pl.options] == ["none", "int8", "nf4"]
    need = [o.memory_bytes for o in pl.options]
    assert need[0] > need[1] > need[2]
    from tests.test_planner import population

    mems = [need[0] + 1, need[1] + 1, need[2] + 1, need[2] - 1]
    pop = population(mems, [1e14] * 4)
    plan = pl.plan(0, np.arange(4), pop)
    assert list(plan.columns["base_quantization"]) == ["none", "int8", "nf4", "none"]
    assert list(plan.kind) == ["lora", "lora", "lora", "none"]


def test_7b_fleet_a_4bit_base_makes_lora_fit_and_split_stays_bf16() -> None:
    """scenarios/llm-7b-lora-fleet.yaml with activation checkpointing: bf16 LoRA needs 14.6 GB,
    so the 6.8 GB RTX 4060 laptops split; with base_quantization auto they take LoRA on an nf4
    base (5.39 GB). The split clients' activations stay bf16 (b*s*h*2 bytes per step)."""
    from simulator.loop.simulation import build_population

    ids = np.arange(0, 100_000, 100)
    out = {}
    for q in ("none", "auto"):
        sc = load_scenario("scenarios/llm-7b-lora-fleet.yaml", {
            "model.workloads.activation_checkpointing": True,
            "model.workloads.base_quantization": q})
        pop, _ = build_population(sc)
        pl = CapabilityPlanner(sc, pop)
        plan = pl.plan(0, ids, pop)
        names = np.array(pop.profile_names, dtype=object)[pop.profile_idx[ids]]
        out[q] = pd.DataFrame({"cls": names, "kind": plan.kind,
                               "q": plan.columns.get("base_quantization", "none")})
        assert {o.step_bytes for o in pl.options if o.kind == "split"} == {2 * 512 * 4096 * 2}
    bf16, auto = (out[q][out[q].cls == "laptop-rtx4060"] for q in ("none", "auto"))
    assert (bf16.kind != "lora").all()
    assert (auto.kind == "lora").mean() > 0.9
    assert set(auto.q[auto.kind == "lora"]) == {"nf4"}
    # the classes where bf16 already fit keep an unquantized base
    a100 = out["auto"][out["auto"].cls == "cloud-a100"]
    assert set(a100.kind) == {"lora"} and set(a100.q) == {"none"}


def test_clients_parquet_column_only_when_set() -> None:
    from tests.test_planner import population

    pop = population([80e9], [1e14])
    assert "base_quantization" not in CapabilityPlanner(scenario()).plan(
        0, np.arange(1), pop).columns
    assert "base_quantization" in CapabilityPlanner(scenario(base_quantization="nf4")).plan(
        0, np.arange(1), pop).columns


def test_validate_refuses_what_cannot_run() -> None:
    from simulator.workloads.registry import TransformerKind

    def problems(**kw: object) -> list[str]:
        return TransformerKind(scenario(**kw)).problems()

    assert problems(base_quantization="auto") == []
    from simulator.config.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="base_quantization: quantizes the frozen base"):
        scenario(base_quantization="nf4", order=["split"])
    with pytest.raises(ScenarioError, match="base_quantization: give at least one"):
        scenario(base_quantization=[])
    real = scenario(base_quantization="auto").model_copy(update={"mode": "real"})
    (line,) = TransformerKind(real).problems()
    assert line.startswith("model.workloads.base_quantization: real mode trains one base")


def test_downlink_delta_bytes_by_hand() -> None:
    """A cached base: a LoRA client downloads only what changed, the adapters and the top 2
    blocks the partial clients train, here int8 with a 2-byte scale per 64 elements; without
    the cache, the whole model at bf16."""
    block = 4 * H * H + 3 * H * F + 2 * H  # attention, MLP, two RMSNorms
    changed = 2 * block
    assert changed == 404_766_720
    int8 = (changed + -(-changed // 64) * 2) + (ADAPTERS + -(-ADAPTERS // 64) * 2)
    assert int8 == 421_741_056

    def lora(**kw: object) -> object:
        sc = scenario(order=["lora", "partial"], partial_blocks=[2], **kw)
        return CapabilityPlanner(sc).options[0]
    assert lora(downlink={"method": "int8"}).download_bytes == int8
    assert lora().download_bytes == (changed + ADAPTERS) * 2 == 817_922_048
    assert lora(base_cached=False).download_bytes == TOTAL * 2 + ADAPTERS * 2
    nocache4 = lora(base_cached=False, downlink={"method": "int4"}).download_bytes
    assert nocache4 == (TOTAL * 0.5 + -(-TOTAL // 64) * 2) + (ADAPTERS * 0.5
                                                              + -(-ADAPTERS // 64) * 2)
