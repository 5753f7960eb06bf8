"""Heterogeneous-rank LoRA aggregation: FLoRA (stacking) and FlexLoRA (SVD) beside HetLoRA's
zero-padding, by hand on small factors, in the engine's delta form, and end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import InputError
from simulator.aggregation.fedavg import Partial
from simulator.aggregation.lora_layout import LORA_SCALING, adapter_layout, base_layout
from simulator.aggregation.strategies import flexlora as FX
from simulator.aggregation.strategies import flora as FL
from simulator.aggregation.strategy import AggregationContext, Contribution, ServerSums
from simulator.config.scenario import apply_overrides, parse_scenario, read_yaml
from simulator.workloads import hetlora

ROOT = Path(__file__).resolve().parents[1]
SCEN = ROOT / "scenarios" / "llm-lora-rank-aggregation.yaml"

# two clients, ranks 1 and 2, d_in = 3, d_out = 2; weights 1 and 3 (p = 1/4, 3/4)
B1, A1 = np.array([[1.0], [2.0]]), np.array([[1.0, 0.0, -1.0]])
B2, A2 = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
W = [1.0, 3.0]
# sum p_i B_i A_i by hand: 1/4 [[1,0,-1],[2,0,-2]] + 3/4 [[0,1,1],[2,1,0]]
DW = np.array([[0.25, 0.75, 0.5], [2.0, 0.75, -0.5]])


def test_flora_stacking_is_the_weighted_sum_of_products() -> None:
    b, a = FL.stack([(B1, A1), (B2, A2)], W)
    assert b.shape == (2, 3) and a.shape == (3, 3)  # stacked rank 1 + 2
    np.testing.assert_allclose(b @ a, DW)
    # HetLoRA's zero-padded average of the factors is not the average of the products
    ha, hb = hetlora.aggregate([(A1, B1), (A2, B2)], W, 2)
    assert np.abs(hb @ ha - DW).max() > 0.1


def test_flexlora_svd_reproduces_the_update_and_truncates_optimally() -> None:
    b, a = FX.aggregate([(B1, A1), (B2, A2)], W, rank=2)
    np.testing.assert_allclose(b @ a, DW, atol=1e-12)  # rank(DW) = 2: exact
    b1, a1 = FX.aggregate([(B1, A1), (B2, A2)], W, rank=1)
    sv = np.linalg.svd(DW, compute_uv=False)
    # Eckart-Young: the best rank-1 error is the second singular value
    assert np.linalg.norm(DW - b1 @ a1) == pytest.approx(sv[1], rel=1e-10)
    # a rank-1 client's copy is the first component of the rank-2 factors
    np.testing.assert_allclose(b[:, :1] @ a[:1], b1 @ a1, atol=1e-12)


def _scenario(**over: object) -> object:
    doc = apply_overrides(read_yaml(SCEN), {"population.size": 30, "clients_per_round": 4,
                                            "rounds": 2, "executor.kind": "local", **over})
    return parse_scenario(doc)


def _sums(g: np.ndarray, finals: list[np.ndarray], n: list[int]) -> ServerSums:
    part = Partial.empty(g.size)
    for cid, (f, k) in enumerate(zip(finals, n, strict=True)):
        part.add_client(cid, f - g, float(k), k, 0.0, 0.0)
    part.updates = np.stack([f - g for f in finals])
    return ServerSums([Contribution(part)])


CTX = AggregationContext(round=0, seed=0, server_lr=1.0, trigger="sync")


@pytest.mark.parametrize("targets", ["all-linear", ["q_proj", "v_proj"]])
def test_the_pure_layout_matches_the_torch_state(targets: object) -> None:
    pytest.importorskip("peft")
    from simulator.workloads import build_workload

    for strat in ("flexlora", "flora"):
        sc = _scenario(**{"aggregation.strategy": strat, "model.workloads.lora_targets": targets})
        w = build_workload(sc, 30)
        ad = adapter_layout(sc)
        want = [(s.module + ".lora_A", s.a_start) for s in ad]
        want = [x for s in ad for x in ((s.module + ".lora_A", s.a_start),
                                        (s.module + ".lora_B", s.b_start))]
        if strat == "flora":
            want += [(s.module + ".weight", s.start) for s in base_layout(ad)]
        got = [(s.name, s.start) for s in w.layout.slots]
        assert got == want
        assert w.n_params == (base_layout(ad)[-1].stop if strat == "flora" else ad[-1].stop)


def _clients(sc: object, extra: int = 0) -> tuple[np.ndarray, list[np.ndarray], list]:
    """A global state and two clients' trained states (ranks 1 and 2 of r_max) in it."""
    ad = adapter_layout(sc)
    n = (base_layout(ad)[-1].stop if extra else ad[-1].stop)
    rng = np.random.default_rng(0)
    g = rng.normal(0, 0.1, n)
    finals = []
    for rank in (1, 2):
        f = g + rng.normal(0, 0.1, n)
        for s in ad:  # components beyond the client's rank are zero (a truncated copy)
            f[s.a_start:s.b_start].reshape(s.rank, s.d_in)[rank:] = 0.0
            f[s.b_start:s.stop].reshape(s.d_out, s.rank)[:, rank:] = 0.0
        if extra:
            for b in base_layout(ad):  # LoRA clients never change the base
                f[b.start:b.stop] = g[b.start:b.stop]
        finals.append(f)
    return g, finals, ad


def test_flexlora_apply_in_the_engines_delta_form() -> None:
    sc = _scenario(**{"aggregation.strategy": "flexlora"})
    g, finals, ad = _clients(sc)
    new = FX.FlexLoRA(sc).apply(g, _sums(g, finals, [1, 3]), CTX)
    for s in ad[:3]:
        want = sum(p * np.matmul(*FX.factors(f, s)) for p, f in zip((0.25, 0.75), finals,
                                                                     strict=True))
        np.testing.assert_allclose(np.matmul(*FX.factors(new, s)), want, atol=1e-10)


def test_flora_apply_merges_into_the_base_and_resets_b() -> None:
    sc = _scenario(**{"aggregation.strategy": "flora"})
    g, finals, ad = _clients(sc, extra=1)
    new = FL.FLoRA(sc).apply(g, _sums(g, finals, [1, 3]), CTX)
    for s, b in zip(ad, base_layout(ad), strict=True):
        want = sum(p * np.matmul(*FX.factors(f, s)) for p, f in zip((0.25, 0.75), finals,
                                                                     strict=True))
        np.testing.assert_allclose(new[b.start:b.stop] - g[b.start:b.stop],
                                   LORA_SCALING * want.reshape(-1), atol=1e-10)
        assert not new[s.b_start:s.stop].any()  # fresh adapters: B = 0
        np.testing.assert_array_equal(new[s.a_start:s.b_start], g[s.a_start:s.b_start])


@pytest.mark.parametrize("over", [{"model.workloads.order": ["lora", "partial"]},
                                  {"aggregation.trigger": "buffered"}, {"mode": "analytic"}])
def test_factor_rules_refuse_what_they_cannot_run(over: dict) -> None:
    from simulator.loop.simulation import build_parts

    for strat in ("flexlora", "flora"):
        with pytest.raises(InputError):
            build_parts(_scenario(**{"aggregation.strategy": strat, **over}))


def test_the_three_rules_train_end_to_end_and_differ(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from simulator.loop.runner import run_scenario

    out = {}
    for strat in (None, "flexlora", "flora"):
        over = {"aggregation.strategy": strat} if strat else {}
        run = run_scenario(_scenario(**over), name=strat or "hetlora",
                           runs_dir=str(tmp_path))
        r = pd.read_parquet(Path(run) / "rounds.parquet")
        assert len(r) == 2 and np.isfinite(r["loss"]).all()
        out[strat] = r["loss"].to_numpy()
    assert not np.array_equal(out[None], out["flexlora"])
    assert not np.array_equal(out[None], out["flora"])
