"""Accounting fixes of issue 14 (item 5), each against a hand-computed figure.

Llama-2-7B (hidden 4096, intermediate 11008, 32 blocks), fp16:
  one block = 4 x 4096^2 (q, k, v, o) + 3 x 4096 x 11008 (gate, up, down) + 2 x 4096 (norms)
            = 67,108,864 + 135,266,304 + 8,192 = 202,383,360 parameters = 404,766,720 bytes;
  LoRA r=64 on q_proj, v_proj: 32 blocks x 2 x 64 x (4096 + 4096) = 33,554,432 parameters
            = 67,108,864 bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.config.scenario import parse_scenario
from simulator.planning.capability import build_options, closed_form_spec

ROOT = Path(__file__).resolve().parents[1]
BLOCK_BYTES = 202_383_360 * 2
LORA64_BYTES = 33_554_432 * 2


def _llm7b(**workloads: Any) -> Any:
    doc = yaml.safe_load((ROOT / "scenarios" / "llm-7b-lora-fleet.yaml").read_text())
    doc["model"]["workloads"].update({"compression": {"method": "none"}, **workloads})
    return parse_scenario(doc)


def _options(sc: Any) -> list[Any]:
    return build_options(closed_form_spec(sc.model), sc)


# --- mixed [lora, partial] workloads: the base blocks partial clients changed -----------------
def test_block_and_adapter_sizes_are_the_hand_computed_ones() -> None:
    spec = closed_form_spec(_llm7b().model)
    assert spec.block_params == 202_383_360
    assert spec.lora_params(64, ("q_proj", "v_proj")) == 33_554_432


def test_lora_alone_downloads_only_its_adapters() -> None:
    lora = [o for o in _options(_llm7b(order=["lora"])) if o.kind == "lora"]
    assert lora[0].rank == 64 and lora[0].download_bytes == LORA64_BYTES  # 67.1 MB


def test_lora_next_to_partial_downloads_the_changed_blocks() -> None:
    """Partial clients train the top 8 blocks of the shared base, so a LoRA client's cached
    base is stale in those 8 blocks every round: 67.1 MB + 8 x 404.8 MB = 3.305 GB."""
    lora = [o for o in _options(_llm7b(order=["lora", "partial"])) if o.kind == "lora"]
    assert lora[0].download_bytes == LORA64_BYTES + 8 * BLOCK_BYTES  # 67 MB + 3.24 GB
    spec = closed_form_spec(_llm7b().model)
    for o in lora:  # every rank
        assert o.download_bytes == spec.lora_params(o.rank, ("q_proj", "v_proj")) * 2 \
            + 8 * BLOCK_BYTES


def test_partial_downloads_the_top_blocks_once() -> None:
    part = [o for o in _options(_llm7b(order=["lora", "partial"])) if o.kind == "partial"]
    assert {o.download_bytes for o in part} == {8 * BLOCK_BYTES}


def test_split_client_downloads_the_changed_blocks_it_holds() -> None:
    """A split client with cut c holds blocks [0, c); partial changes [24, 32)."""
    sc = _llm7b(order=["lora", "partial", "split"], split_cuts=[4, 28])
    split = {o.cut: o for o in _options(sc) if o.kind == "split"}
    alone = {o.cut: o for o in _options(_llm7b(order=["split"], split_cuts=[4, 28]))}
    assert split[4].download_bytes == alone[4].download_bytes  # blocks 0-3: untouched
    assert split[28].download_bytes == alone[28].download_bytes + 4 * BLOCK_BYTES  # 24-27


def test_without_a_cached_base_nothing_extra() -> None:
    lora = [o for o in _options(_llm7b(order=["lora", "partial"], base_cached=False))
            if o.kind == "lora"]
    spec = closed_form_spec(_llm7b().model)
    assert lora[0].download_bytes == spec.total_params * 2 + LORA64_BYTES


# --- secure aggregation after compression ------------------------------------------------------
def _secagg_round(method: str, d: float = 1000.0, n: int = 3) -> tuple[Any, Any]:
    """Charge ``n`` clients whose updates have ``d`` elements compressed with ``method``
    (fp16 values, int8 blocks of 64 with 2-byte scales, top-k 1% with 4-byte indices)."""
    import numpy as np

    from simulator.config.model import Compression
    from simulator.config.privacy import SecureAggregation
    from simulator.core.cost import TaskCost, Timing
    from simulator.planning import Plan
    from simulator.planning.llm_cost import upload_bytes
    from simulator.privacy.secagg import SecureAggregator

    comp = Compression(method=method)
    plain = float(upload_bytes(d, 2.0, comp))
    ones = np.ones(n)
    plan = Plan(TaskCost(ones * 0.0, ones * plain, ones, ones), np.zeros(n, bool),
                np.array(["lora"] * n, dtype=object), {"trainable_params": ones * d})
    agg = SecureAggregator(SecureAggregation(enabled=True), comp)
    plan2, _, sa = agg.charge(plan, Timing(ones, ones, ones), ones * 8e6, ones * 8e6, ones * 0.01)
    masked = plan2.cost.upload_bytes[0] - plain - sa_unmask(n)
    sa_setup = 2 * 33 + (n - 1) * (2 * 32 + 2 * 4 + 28)
    return masked - sa_setup, sa


def sa_unmask(n: int) -> float:
    return (n - 1) * (32 + 4)  # one share + one id per peer


@pytest.mark.parametrize("method,plain,masked", [
    # n = 3: every masked element carries ceil(log2 3) = 2 extra bits against overflow.
    # none: 1000 fp16 values quantized to the ring's input_bits (32): 1000 x 34 bits.
    ("none", 2000.0, 1000 * 34 / 8),
    # int8: 1000 8-bit values + ceil(1000/64) = 16 16-bit scales, each + 2 bits.
    ("int8", 1000.0 + 16 * 2, (1000 * 10 + 16 * 18) / 8),
    # int4: 1000 4-bit values + 16 scales.
    ("int4", 500.0 + 16 * 2, (1000 * 6 + 16 * 18) / 8),
    # top-k 1%: 10 (value, index) pairs in the clear, but pairwise masks are dense: all 1000
    # coordinates are masked (32 + 2 bits each), the sparsity is lost.
    ("topk", 10 * (2 + 4), 1000 * 34 / 8),
])
def test_secagg_masks_the_compressed_elements(method: str, plain: float, masked: float) -> None:
    from simulator.config.model import Compression
    from simulator.planning.llm_cost import upload_bytes

    assert float(upload_bytes(1000.0, 2.0, Compression(method=method))) == plain
    extra, sa = _secagg_round(method)
    assert extra == pytest.approx(masked - plain)  # masked input minus the plain update
    assert sa.plain_bytes[0] == plain


def test_secagg_server_unmasks_the_masked_size() -> None:
    """Server PRG: 2 survivors' self masks + 1 dropout x 2 survivors' pairwise masks, each the
    size of one dense masked vector (top-k: 1000 x 34 bits)."""
    import numpy as np

    from simulator.core import outcomes as R

    _, sa = _secagg_round("topk")
    from simulator.config.privacy import SecureAggregation
    from simulator.privacy.secagg import SecureAggregator

    agg = SecureAggregator(SecureAggregation(enabled=True, threshold_fraction=0.5))
    out = R.RoundOutcome(np.array([R.COMPLETED, R.COMPLETED, R.DROPPED], np.int8),
                         np.ones(3), 1.0, np.ones(3), np.ones(3), np.ones(3))
    agg.settle(sa, out)
    assert sa.server_s == pytest.approx(4 * 1000 * 34 / 8 / 4e9)
