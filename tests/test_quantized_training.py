"""Real-mode quantization (issue 18 items 2 and 4): the frozen base fake-quantized as a 4-bit or
8-bit device stores it, and clients training from the downlink-encoded global state."""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import pytest
import torch

from simulator.config.scenario import load_scenario
from simulator.workloads.precision import (
    NF4_CODE,
    block_linears,
    downlink_roundtrip,
    fake_quantize,
    quantize_base_,
)


def test_nf4_block_by_hand() -> None:
    """One block of 64: absmax 2.0; 1.0 is 0.5 of absmax: nearest NF4 code 0.4407 (0.059 away;
    0.5626 is 0.063 away)."""
    w = torch.zeros(64)
    w[0], w[1], w[2], w[3] = 2.0, 1.0, -0.19, 0.03
    q = fake_quantize(w, "nf4")
    assert q[0] == 2.0
    assert q[1] == pytest.approx(2.0 * 0.44070982933044434)
    assert q[2] == pytest.approx(2.0 * -0.09105003625154495)  # -0.095 of absmax
    assert q[3] == pytest.approx(0.0)  # 0.015: nearer 0 than 0.0796
    codes = np.array(NF4_CODE)
    assert all(np.isclose(codes, v, atol=1e-7).any() for v in (q / 2.0).numpy())


def test_int8_error_is_half_a_step_per_row() -> None:
    torch.manual_seed(0)
    w = torch.randn(8, 100)
    q = fake_quantize(w, "int8")
    step = w.abs().amax(dim=1, keepdim=True) / 127
    assert ((q - w).abs() <= step / 2 + 1e-7).all()
    assert not torch.equal(q, w)


def test_quantize_base_touches_block_linears_only() -> None:
    from simulator.workloads.llm import build_llama

    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "intermediate_size": 176, "vocab_size": 32,
           "max_position_embeddings": 64}
    model = build_llama(cfg, 0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    n = quantize_base_(model, "fp4")
    assert n == 2 * (4 * 64 * 64 + 3 * 64 * 176)  # q, k, v, o, gate, up, down per block
    assert len(block_linears(model)) == 14
    for name, p in model.named_parameters():
        moved = not torch.equal(p, before[name])
        assert moved == (".layers." in name and "norm" not in name), name


def test_downlink_roundtrip_is_the_int4_code() -> None:
    from types import SimpleNamespace

    x = np.linspace(-1, 1, 130)
    dl = SimpleNamespace(method="int4", block_size=64, scale_bytes=4.0)
    y = downlink_roundtrip(x, dl)
    assert y.shape == x.shape and not np.array_equal(x, y)
    scale = np.abs(x[:64]).max() / 7
    assert np.abs(y[:64] - x[:64]).max() <= scale / 2 + 1e-12
    assert downlink_roundtrip(x, SimpleNamespace(method="none")) is x


@pytest.mark.parametrize("variant", ["base", "downlink"])
def test_real_run_trains_on_the_quantized_values(variant: str) -> None:
    """Two rounds of the tiny Llama: the 4-bit base (or an int4 downlink) moves the loss, the
    bytes follow the encoding (adapters: 39,424 elements at 2 bytes, or 0.5 + a 2-byte scale per
    64 under int4: 20,944 bytes)."""
    from simulator.loop.runner import run_scenario

    base = {"executor.kind": "local", "rounds": 2, "clients_per_round": 6, "overcommit": 1.0,
            "model.workloads.order": ["lora"], "model.workloads.lora_ranks": [8]}
    ov = ({"model.workloads.base_quantization": "nf4"} if variant == "base"
          else {"model.workloads.downlink": {"method": "int4"}})
    out = {}
    for name, extra in (("plain", {}), (variant, ov)):
        sc = load_scenario("scenarios/llm-lora-heterogeneous.yaml", {**base, **extra})
        with tempfile.TemporaryDirectory() as d:
            run = run_scenario(sc, name=name, runs_dir=d)
            out[name] = (pd.read_parquet(run / "rounds.parquet"),
                         pd.read_parquet(run / "clients.parquet"))
    (r0, c0), (r1, c1) = out["plain"], out[variant]
    assert np.isfinite(r1["loss"]).all()
    assert r1["loss"].iloc[-1] != r0["loss"].iloc[-1]
    lora0 = c0[c0.workload == "lora"]
    lora1 = c1[c1.workload == "lora"]
    assert set(lora0.bytes_down[lora0.outcome == "completed"]) == {39_424 * 2}
    if variant == "base":
        assert set(lora1.base_quantization) == {"nf4"}
        assert set(lora1.bytes_down[lora1.outcome == "completed"]) == {39_424 * 2}
    else:
        assert set(lora1.bytes_down[lora1.outcome == "completed"]) == {20_944}
