"""LoRA / HetLoRA: hand-made aggregation, truncated copies, adapter-only state, loss falls."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.aggregation import Partial, apply_fedavg
from simulator.config.scenario import parse_scenario
from simulator.core import rng
from simulator.core.jobs import JobBatch
from simulator.workloads import hetlora
from tests.conftest import SHARED_DATA, small_doc

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

SHAKESPEARE = SHARED_DATA / "tinyshakespeare.txt"
TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16,
        "tie_word_embeddings": False}


def tiny_workload(state=None, compression=None, train=None, seq_len=16, n_clients=60):
    """An LLMWorkload built from plain arguments (no scenario model block needed)."""
    from simulator.data.text import build_text_dataset
    from simulator.workloads.llm import LLMWorkload, StateConfig, TrainConfig
    from simulator.workloads.lora import LoraSpec

    torch.set_num_threads(1)
    sc = parse_scenario(small_doc(**{"data": {"dataset": "text", "partition": "natural",
                                              "samples_per_client": 6},
                                     "model.seq_len": seq_len}))
    ds = build_text_dataset(sc, n_clients)
    state = state or StateConfig(LoraSpec(r_max=4, alpha=8.0), "none")
    cfg = dict(TINY, vocab_size=ds.n_classes, max_position_embeddings=seq_len)
    return LLMWorkload(cfg, ds, train or TrainConfig(1, 4, 0.01, "adam"), state, 7, compression)


def jobs_for(ids, kind, rnd=0, **cols):
    ids = np.asarray(ids, np.int64)
    n = len(ids)
    a = {"kind": np.array([kind] * n, dtype=object)}
    a.update({k: np.full(n, v) for k, v in cols.items()})
    return JobBatch(rnd, ids, np.array([rng.int_seed(7, rng.TRAINING, rnd, c) for c in ids],
                                       np.uint64), a)


# --- HetLoRA aggregation on hand-made tensors ---------------------------------------------------
A0, B0 = np.array([[2.0, 4.0]]), np.array([[1.0], [3.0]])  # client 0: rank 1, weight 1
A1 = np.array([[6.0, 8.0], [10.0, 12.0]])  # client 1: rank 2, weight 3
B1 = np.array([[5.0, 7.0], [9.0, 11.0]])
EXPECT_A = np.array([[5.0, 7.0], [7.5, 9.0]])  # (1*pad(A0) + 3*A1) / 4
EXPECT_B = np.array([[4.0, 5.25], [7.5, 8.25]])  # (1*pad(B0) + 3*B1) / 4


def test_hetlora_reference_zero_pads_and_weights_by_data_size():
    a, b = hetlora.aggregate([(A0, B0), (A1, B1)], [1.0, 3.0], r_max=2)
    assert np.array_equal(a, EXPECT_A) and np.array_equal(b, EXPECT_B)
    ta, tb = hetlora.truncate(A1, B1, 1)
    assert ta.tolist() == [[6.0, 8.0]] and tb.tolist() == [[5.0], [9.0]]


@pytest.mark.parametrize("ga,gb", [(np.ones((2, 2)), np.zeros((2, 2))),
                                   (np.full((2, 2), -3.0), np.full((2, 2), 0.5))])
def test_hetlora_through_partial_masks_matches_the_paper(ga, gb):
    # flat = [A (2x2), B (2x2)]; padded components count as zeros with the client's weight.
    g = np.concatenate([ga.ravel(), gb.ravel()])
    p = Partial.empty(8)
    for (a, b), w in (((A0, B0), 1.0), ((A1, B1), 3.0)):
        pa, pb = hetlora.pad(a, b, 2)
        delta, mask = hetlora.client_contribution(g, np.concatenate([pa.ravel(), pb.ravel()]),
                                                  np.ones(8))
        p.add_client(0, delta, w, int(w), 0.0, 0.0, mask=mask)
    new = apply_fedavg(g, p)
    assert np.allclose(new[:4].reshape(2, 2), EXPECT_A, atol=1e-9)
    assert np.allclose(new[4:].reshape(2, 2), EXPECT_B, atol=1e-9)


# --- the LoRA workload ----------------------------------------------------------------------------
def test_state_holds_only_adapters_and_matches_the_closed_form_count():
    from simulator.config.llm import spec_from_config

    w = tiny_workload()
    spec = spec_from_config("llama", dict(TINY, vocab_size=w.vocab, head_dim=None,
                                          num_key_value_heads=4, attention_bias=False,
                                          mlp_bias=False))
    assert w.n_params == spec.lora_params(4, ("q_proj", "v_proj"))
    assert all(s.side for s in w.layout.slots)
    assert np.all(w.initial_state()[w.layout.slots[1].start:w.layout.slots[1].stop] == 0)  # B


def test_rank_r_client_trains_a_truncated_copy():
    w = tiny_workload()
    g = w.initial_state()
    res = w.train_client(g, 3, 11, "lora", rank=2)
    inside = w.within_rank(2)
    assert np.all(res.values[~inside] == 0.0)  # components 2..3 stay zero (padding)
    assert np.all(res.trained == 1.0)  # ... yet they are inside the aggregation mask
    assert np.abs(res.values[inside] - g[inside]).max() > 1e-4
    part = w.train(g, jobs_for([3], "lora", rank=2))
    new = apply_fedavg(g, part)
    assert np.abs(new[~inside]).max() < 1e-8  # a lone rank-2 client zeroes the higher ones


def test_truncated_copy_equals_a_rank_r_adapter():
    """peft at r_max truncated to r computes what a rank-r peft adapter computes."""
    from simulator.workloads.llm import build_llama
    from simulator.workloads.lora import LoraSpec, adapter_pairs, attach_lora, truncate_

    cfg = dict(TINY, vocab_size=20)
    big = attach_lora(build_llama(cfg, 3), LoraSpec(r_max=8, alpha=16.0))
    small = attach_lora(build_llama(cfg, 3), LoraSpec(r_max=2, alpha=4.0))  # same scaling 2
    pb, ps = adapter_pairs(big), adapter_pairs(small)
    with torch.no_grad():
        for a, b in zip(pb, ps, strict=True):
            a.b.normal_(0.0, 0.1)
            truncate_(a, 2)
            b.a.copy_(a.a[:2])
            b.b.copy_(a.b[:, :2])
    x = torch.randint(0, 20, (3, 16))
    outs = []
    for m in (big, small):
        logits = m(input_ids=x).logits
        logits.square().mean().backward()
        outs.append(logits.detach())
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    for a, b in zip(pb, ps, strict=True):
        assert torch.allclose(a.a.grad[:2], b.a.grad, atol=1e-6)
        assert torch.allclose(a.b.grad[:, :2], b.b.grad, atol=1e-6)
        assert a.a.grad[2:].abs().max() == 0 and a.b.grad[:, 2:].abs().max() == 0


def test_training_is_deterministic_per_client_and_layout_independent():
    w1, w2 = tiny_workload(), tiny_workload()
    g = w1.initial_state()
    assert np.array_equal(g, w2.initial_state())
    together = w1.train(g, jobs_for([1, 2, 5, 9], "lora", rank=2)).sorted()
    a = w2.train(g, jobs_for([1, 9], "lora", rank=2))
    b = w2.train(g, jobs_for([2, 5], "lora", rank=2))
    apart = a.merge(b).sorted()
    assert np.array_equal(together.sum_q, apart.sum_q)
    assert np.array_equal(together.weight, apart.weight)
    assert np.array_equal(together.loss_mean, apart.loss_mean)


def test_heterogeneous_ranks_lower_the_loss():
    w = tiny_workload(train=None)
    g = w.initial_state()
    _, loss0 = w.evaluate(g)
    for r in range(6):
        ids = np.arange(12) + 12 * (r % 4)
        ranks = np.array([4, 2, 1] * 4)
        jobs = jobs_for(ids, "lora", r)
        jobs.assignment["rank"] = ranks
        g = apply_fedavg(g, w.train(g, jobs).sorted())
    _, loss1 = w.evaluate(g)
    assert loss1 < loss0 - 0.05


# --- end to end through the engine on tiny Shakespeare ----------------------------------------
@pytest.mark.slow
@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="shared tinyshakespeare.txt not present")
def test_tinyshakespeare_by_role_loss_falls(tmp_path):
    import pandas as pd

    from simulator.loop.runner import run_scenario

    doc = small_doc(
        name="tiny-shakespeare",
        data={"dataset": "text", "partition": "natural", "path": str(SHAKESPEARE),
              "test_fraction": 0.1, "text": {"max_sequences": 8, "test_sequences": 64}},
        model={"kind": "transformer", "family": "llama", "seq_len": 32,
               "config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                          "intermediate_size": 64, "vocab_size": 96,
                          "max_position_embeddings": 32, "initializer_range": 0.18},
               "workloads": {"order": ["lora", "partial", "split"], "lora_ranks": [8, 4],
                             "lora_targets": "all-linear", "partial_blocks": [1],
                             "require_deadline": False}},
        training={"epochs": 1, "batch_size": 8, "lr": 0.02, "optimizer": "adam"},
        rounds=6, clients_per_round=10, overcommit=1.0, deadline_s=None,
        executor={"kind": "local"})
    doc["population"]["size"] = 40
    path = run_scenario(parse_scenario(doc), runs_dir=str(tmp_path))
    rounds = pd.read_parquet(path / "rounds.parquet")
    assert rounds["completed"].sum() > 0
    assert rounds["loss"].iloc[-1] < rounds["loss"].iloc[0] - 0.2


# --- the shipped scenario, small and fast ---------------------------------------------------------
SCENARIO = "scenarios/llm-lora-heterogeneous.yaml"


def _scenario_run(tmp_path, name, **over):
    import pandas as pd

    from simulator.config.scenario import load_scenario
    from simulator.loop.runner import run_scenario
    from tests.conftest import ROOT

    fast = {"rounds": 4, "clients_per_round": 10, "executor.kind": "local",
            "data.text.test_sequences": 64, **over}
    run = run_scenario(load_scenario(ROOT / SCENARIO, fast), name=name, runs_dir=str(tmp_path))
    return pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet")


@pytest.mark.slow
def test_scenario_mixes_workloads_and_loss_falls(tmp_path):
    rounds, clients = _scenario_run(tmp_path, "fast")
    done = clients[clients["outcome"] == "completed"]
    kinds = set(done["workload"])
    assert {"lora", "partial"} <= kinds or {"lora", "split"} <= kinds
    assert done.loc[done["workload"] == "lora", "rank"].nunique() >= 2
    assert rounds["loss"].iloc[-1] < rounds["loss"].iloc[0] - 0.2
    assert rounds["train_loss"].iloc[-1] < rounds["train_loss"].iloc[0]


@pytest.mark.ray
@pytest.mark.slow
def test_scenario_identical_on_local_and_ray(tmp_path, ray_session):
    import pandas as pd

    over = {"rounds": 2, "clients_per_round": 6}
    r0, c0 = _scenario_run(tmp_path, "local", **over)
    r1, c1 = _scenario_run(tmp_path, "ray", **over, **{"executor.kind": "ray",
                                                       "executor.num_actors": 2})
    pd.testing.assert_frame_equal(r0.drop(columns=["wall_s"]), r1.drop(columns=["wall_s"]),
                                  check_exact=True)
    pd.testing.assert_frame_equal(c0, c1, check_exact=True)


# --- clear one-line errors from the transformer builder ------------------------------------------
@pytest.mark.parametrize("over,field", [
    ({"model.family": "gpt2", "model.config": {"hidden_size": 32, "num_hidden_layers": 2,
                                               "num_attention_heads": 4, "vocab_size": 64,
                                               "max_position_embeddings": 16}}, "model.family"),
    ({"data": {"dataset": "digits"}}, "data.dataset"),
    ({"model.config.vocab_size": 8}, "model.config.vocab_size"),
    ({"model.workloads.order": ["lora", "width"]}, "model.workloads.order"),
])
def test_transformer_builder_errors_name_the_field(over, field):
    from simulator import InputError
    from simulator.workloads.registry import build_registered

    doc = small_doc(**{"data": {"dataset": "text", "samples_per_client": 4},
                       "model": {"kind": "transformer", "family": "llama", "seq_len": 16,
                                 "config": dict(TINY, vocab_size=64)},
                       **over})
    with pytest.raises(InputError) as err:
        build_registered(parse_scenario(doc), 200)
    assert err.value.field == field and "\n" not in str(err.value)
