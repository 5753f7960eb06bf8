"""Pruning of the global model (issue 18 item 3; docs/large-models.md 'Pruning'): sparse
encodings with exact bytes, the planner's density per device, hand-computed on Llama-2-7B."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.config.llm import closed_form_spec
from simulator.planning.capability import CapabilityPlanner
from simulator.planning.pruning import encoding, kept_weights
from tests.test_precision import ADAPTERS, QUANT, TOTAL, F, H, scenario

ATT, MLP = H * H, H * F  # q, k, v, o are [4096, 4096]; gate, up [11008, 4096]; down [4096, 11008]


def pruning(method: str, *d: float) -> dict:
    return {"method": method, "densities": list(d)}


def test_50_percent_magnitude_encoding_by_hand() -> None:
    """Half of every matrix kept: indices would cost 4 bytes x n/2 = 2n, a bitmap n/8: the
    bitmap wins (values+bitmap); 16 MB per 4096x4096 matrix of positions would be 2 MB."""
    assert encoding(ATT, ATT // 2, 4.0) == (ATT / 8, "values+bitmap")
    assert ATT / 8 == 2_097_152
    spec = closed_form_spec(scenario().model)
    sc = scenario(pruning=pruning("magnitude", 0.5))
    k = kept_weights(spec, sc.model.workloads.pruning, 0.5)
    assert k.weights == QUANT and k.kept == QUANT / 2 and k.encoding == "values+bitmap"
    assert k.position_bytes == 32 * (4 * ATT / 8 + 3 * MLP / 8) == 809_500_672
    # a full fine-tuning client downloads the pruned model: kept values at bf16 + bitmaps,
    # and uploads the kept values only (the server made the mask)
    full = CapabilityPlanner(scenario(order=["full"], pruning=pruning("magnitude", 1.0, 0.5)))
    dense, half = full.options
    assert dense.density == 1.0 and dense.download_bytes == TOTAL * 2
    assert half.download_bytes == (TOTAL - QUANT / 2) * 2 + 809_500_672 == 7_810_326_528
    assert half.upload_bytes == (TOTAL - QUANT / 2) * 2
    assert half.flops_per_token == dense.flops_per_token  # dense kernels: no saving


def test_indices_win_below_one_in_32() -> None:
    """At 2% kept a 4096x4096 matrix keeps 335,544 weights: 1,342,176 bytes of int32 indices
    against a 2,097,152-byte bitmap."""
    assert encoding(ATT, ATT - round(0.98 * ATT), 4.0) == (1_342_176, "values+indices")
    assert encoding(ATT, ATT, 4.0) == (0.0, "dense")


def test_structured_50_percent_by_hand() -> None:
    """Half the output rows of each matrix: a row bitmap of ceil(d_out / 8) bytes, and the
    LoRA client's FLOPs drop by 2 per removed weight per pass (3 passes with checkpointing)."""
    spec = closed_form_spec(scenario().model)
    sc = scenario(pruning=pruning("structured", 1.0, 0.5))
    k = kept_weights(spec, sc.model.workloads.pruning, 0.5)
    assert k.kept == QUANT / 2 and k.encoding == "rows+bitmap"
    assert k.position_bytes == 32 * (4 * 512 + 2 * 1376 + 512) == 169_984
    dense, half = CapabilityPlanner(sc).options
    assert dense.flops_per_token - half.flops_per_token == pytest.approx(2 * 3 * QUANT / 2)
    # memory: the pruned rows and nothing else (a smaller dense matrix needs no workspace)
    assert dense.memory_bytes - half.memory_bytes == pytest.approx(QUANT / 2 * 2 - 169_984)
    assert half.download_bytes == dense.download_bytes == ADAPTERS * 2  # cached base


def test_density_by_device_class() -> None:
    """The densest that fits: a device with room for the dense base keeps it."""
    from tests.test_planner import population

    pl = CapabilityPlanner(scenario(pruning=pruning("magnitude", 1.0, 0.5, 0.25)))
    need = [o.memory_bytes for o in pl.options]
    assert need[0] > need[1] > need[2]
    pop = population([need[0] + 1, need[1] + 1, need[2] + 1, need[2] - 1], [1e14] * 4)
    plan = pl.plan(0, np.arange(4), pop)
    assert list(plan.columns["density"]) == [1.0, 0.5, 0.25, 1.0]
    assert list(plan.kind) == ["lora", "lora", "lora", "none"]


@pytest.mark.parametrize("method", ["magnitude", "structured"])
def test_real_pruning_keeps_the_density(method: str) -> None:
    from simulator.workloads.llm import build_llama
    from simulator.workloads.pruning import prune_base_

    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 4, "intermediate_size": 176, "vocab_size": 32,
           "max_position_embeddings": 64}
    model = build_llama(cfg, 0)
    params = [id(p) for p in model.parameters()]
    kept, total = prune_base_(model, method, 0.5)
    assert total == 2 * (4 * 64 * 64 + 3 * 64 * 176) and kept == total // 2
    assert [id(p) for p in model.parameters()] == params  # same Parameters, pruned in place
    if method == "structured":  # whole rows are zero
        w = model.model.layers[0].mlp.gate_proj.weight
        rows = (w == 0).all(dim=1)
        assert int(rows.sum()) == 88


def test_real_run_on_a_pruned_base() -> None:
    import tempfile

    import pandas as pd

    from simulator.config.scenario import load_scenario
    from simulator.loop.runner import run_scenario

    base = {"executor.kind": "local", "rounds": 2, "clients_per_round": 6, "overcommit": 1.0,
            "model.workloads.order": ["lora"], "model.workloads.lora_ranks": [8]}
    losses = []
    for extra in ({}, {"model.workloads.pruning": pruning("magnitude", 0.5)}):
        sc = load_scenario("scenarios/llm-lora-heterogeneous.yaml", {**base, **extra})
        with tempfile.TemporaryDirectory() as d:
            run = run_scenario(sc, name="p", runs_dir=d)
            losses.append(pd.read_parquet(run / "rounds.parquet")["loss"].to_numpy())
            cols = pd.read_parquet(run / "clients.parquet").columns
    assert "density" in cols
    assert np.isfinite(losses[1]).all() and losses[1][-1] != losses[0][-1]


PRUNEFL = {"method": "magnitude", "densities": [1.0], "schedule": "prunefl",
           "every_rounds": 2, "factor": 0.8, "final_density": 0.5}


def test_prunefl_schedule_by_hand() -> None:
    from types import SimpleNamespace

    from simulator.planning.pruning import density_at, option_densities

    pr = SimpleNamespace(**PRUNEFL)
    assert [density_at(pr, t) for t in range(9)] == pytest.approx(
        [1, 1, 0.8, 0.8, 0.64, 0.64, 0.512, 0.512, 0.5])
    assert option_densities(pr, 9) == [density_at(pr, t) for t in (0, 2, 4, 6, 8)]
    # the planner gives every LoRA client the round's density
    from tests.test_planner import population

    sc = scenario(pruning=PRUNEFL).model_copy(update={"rounds": 9})
    pl = CapabilityPlanner(sc)
    pop = population([80e9] * 3, [1e14] * 3)
    for rnd, want in ((0, 1.0), (3, 0.8), (8, 0.5)):
        plan = pl.plan(rnd, np.arange(3), pop)
        assert list(plan.columns["density"]) == pytest.approx([want] * 3)
        assert set(plan.kind) == {"lora"}


def test_prunefl_prunes_the_real_base_as_rounds_go() -> None:
    from simulator.config.scenario import load_scenario
    from simulator.core.jobs import JobBatch
    from simulator.workloads import build_workload
    from simulator.workloads.precision import block_linears

    sc = load_scenario("scenarios/llm-lora-heterogeneous.yaml", {
        "population.size": 40, "model.workloads.order": ["lora"], "model.workloads.lora_ranks": [4],
        "model.workloads.pruning": {**PRUNEFL, "every_rounds": 1, "factor": 0.5,
                                    "final_density": 0.25}})
    wl = build_workload(sc, sc.population.size)

    def density() -> float:
        ws = [m.weight for _, m in block_linears(wl.model)]
        return sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws)
    assert density() == pytest.approx(1.0)
    state = wl.initial_state()
    for rnd, want in ((0, 1.0), (1, 0.5), (2, 0.25), (3, 0.25)):
        jobs = JobBatch(rnd, np.array([0]), np.array([7], np.uint64),
                        {"kind": np.array(["lora"], dtype=object), "rank": np.array([4])})
        wl.train(state, jobs)
        assert density() == pytest.approx(want, abs=1e-3)
