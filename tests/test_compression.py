"""Update compression: round-trip error bounds, byte counts equal to the cost model's, top-k
error feedback per client (bounded), and compression applied to real LoRA updates."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from simulator import FedFleetError
from simulator.config.scenario import Compression
from simulator.planning.llm_cost import upload_bytes
from simulator.workloads.compression import (
    CompressionSpec,
    Compressor,
    ResidualStore,
    dequantize,
    pack_int4,
    payload_bytes,
    quantize,
    unpack_int4,
)


def _spec(method, **kw):
    c = Compression(method=method, **kw)
    return c, CompressionSpec.from_settings(c, 2.0)


@pytest.mark.parametrize("method,levels", [("int8", 127), ("int4", 7)])
@pytest.mark.parametrize("block", [64, 7])
def test_quantization_round_trip_within_half_a_step(method, levels, block):
    x = np.random.default_rng(0).normal(0, 1e-3, 1000) * np.repeat([1, 50, 0.01, 3], 250)
    cfg, spec = _spec(method, block_size=block)
    out, nbytes = Compressor(spec).roundtrip(0, 0, x)
    q, scale = quantize(x, method, block, 2.0)
    assert np.abs(q).max() <= levels  # scales are rounded up: nothing is clipped
    step = np.repeat(scale.astype(np.float64), block)[:x.size]
    assert np.all(np.abs(out - x) <= step / 2 * (1 + 1e-9))
    pad = np.zeros(len(scale) * block)
    pad[:x.size] = np.abs(x)
    assert np.all(scale.astype(np.float64) * levels >= pad.reshape(-1, block).max(1))
    nb = math.ceil(1000 / block)
    assert nbytes == payload_bytes(spec, 1000) == upload_bytes(1000, 2.0, cfg)
    assert nbytes == 1000 * (1 if method == "int8" else 0.5) + nb * 2


def test_zero_block_and_int4_packing():
    q, s = quantize(np.zeros(10), "int8", 4, 2.0)
    assert np.all(q == 0) and np.all(dequantize(q, s, 4) == 0)
    for n in (1, 6, 7):
        codes = np.random.default_rng(n).integers(-7, 8, n).astype(np.int8)
        packed = pack_int4(codes)
        assert packed.nbytes == math.ceil(n / 2)
        assert np.array_equal(unpack_int4(packed, n), codes)


def test_diverged_update_is_a_clear_error():
    with pytest.raises(FedFleetError, match="too large"):
        quantize(np.array([1e9, 1.0]), "int8", 64, 2.0)
    with pytest.raises(FedFleetError):
        quantize(np.array([np.nan, 1.0]), "int4", 64, 2.0)


def test_topk_bytes_and_error_feedback():
    cfg, spec = _spec("topk", topk_fraction=0.25)
    comp = Compressor(spec)
    x = np.array([4.0, -3.0, 0.5, 0.25, 2.0, -1.0, 0.1, 0.0])
    out, nbytes = comp.roundtrip(7, 0, x)
    assert out.tolist() == [4.0, -3.0, 0, 0, 0, 0, 0, 0]  # k = ceil(0.25 * 8) = 2
    assert nbytes == 2 * (2.0 + 4.0) == upload_bytes(8, 2.0, cfg)
    out2, _ = comp.roundtrip(7, 1, np.zeros(8))  # what was held back goes next
    assert out2.tolist() == [0, 0, 0, 0, 2.0, -1.0, 0, 0]
    other, _ = comp.roundtrip(8, 1, np.zeros(8))  # residuals are per client
    assert not other.any()
    # Conservation: everything sent plus what is still held back equals the inputs' sum.
    rs = np.random.default_rng(1)
    ins = [rs.normal(size=8) for _ in range(5)]
    c2 = Compressor(spec)
    sent = sum(c2.roundtrip(1, r, v)[0] for r, v in enumerate(ins))
    left = c2.store.get(1, 4, 8)
    assert np.allclose(sent + left, sum(ins), atol=1e-6)


def test_residual_store_is_bounded_by_age_and_bytes():
    s = ResidualStore(max_age_rounds=3, max_bytes=10 * 4 * 2)
    s.put(1, 0, np.ones(10))
    assert s.get(1, 3, 10).sum() == 10 and s.get(1, 4, 10).sum() == 0  # expired by age
    assert s.get(1, 1, 11).sum() == 0  # shape changed (new rank): reset
    s.put(2, 5, np.ones(10))  # round 5 drops client 1's round-0 residual
    assert len(s) == 1 and s.nbytes == 40
    s.put(3, 6, np.ones(10))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        s.put(4, 7, np.ones(10))  # over 80 bytes: the stalest (client 2) goes
    assert sorted(s._data) == [3, 4] and s.nbytes == 80
    assert any("layout" in str(w.message) for w in rec)


@pytest.mark.parametrize("method", ["int8", "int4", "topk"])
def test_compression_applies_to_real_lora_updates_with_planner_bytes(method):
    pytest.importorskip("peft")
    from simulator.aggregation import apply_fedavg
    from simulator.config.llm import spec_from_config
    from tests.test_lora import TINY, jobs_for, tiny_workload

    cfg, spec = _spec(method, topk_fraction=0.1)
    plain = tiny_workload()
    comp = tiny_workload(compression=spec)
    g = plain.initial_state()
    jobs = jobs_for([2, 3], "lora", rank=2)
    a = apply_fedavg(g, plain.train(g, jobs).sorted())
    b = apply_fedavg(g, comp.train(g, jobs).sorted())
    assert not np.array_equal(a, b) and np.abs(a - b).max() < np.abs(a - g).max()
    model = spec_from_config("llama", dict(TINY, vocab_size=plain.vocab))
    elements = model.lora_params(2, ("q_proj", "v_proj"))
    for cid in (2, 3):
        assert comp.last_stats[cid]["upload_bytes"] == upload_bytes(elements, 2.0, cfg)
