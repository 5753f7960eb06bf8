"""Client-side evaluation and fine-tune personalisation (the ``evaluation:`` block).

Checked by hand: a sampled client's held-out accuracy recomputed in numpy from the global model's
weights and the client's shard; the distribution columns (worst-10 %, p10, median) from a known
vector; personalisation helps on strongly non-IID digits; identical tables on local and Ray and
after a crash and resume; every trigger and the torch / LLM workloads record the columns;
impossible settings are one line at validation.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.io.recording import MemoryRecorder
from simulator.loop.client_eval import COLUMNS, row_of, summarize, worst_decile_mean
from simulator.loop.simulation import Simulation
from tests.conftest import small_doc

EVAL = {"clients_per_round": 12}


def _sim(rounds: int, **over: Any) -> tuple[Simulation, MemoryRecorder]:
    sim = Simulation(parse_scenario(small_doc(rounds=rounds, **over)))
    rec = MemoryRecorder()
    for _ in range(rounds):
        sim.step(rec)
    sim.close()
    return sim, rec


# --- the statistics -------------------------------------------------------------------------------
def test_worst_decile_p10_and_median_by_hand() -> None:
    acc = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 1.0, 0.2, 0.8, 0.6, 0.4, 0.0, 0.95])  # 12 clients
    s = summarize(acc, "a")
    # worst 10 %: the ceil(12 / 10) = 2 lowest accuracies, 0.0 and 0.1
    assert s["a_worst10"] == pytest.approx(0.05)
    # p10 with linear interpolation: sorted position 0.1 * 11 = 1.1 -> 0.1 + 0.1 * (0.2 - 0.1)
    assert s["a_p10"] == pytest.approx(0.11)
    assert s["a_median"] == pytest.approx((0.5 + 0.6) / 2)
    assert s["a_mean"] == pytest.approx(acc.sum() / 12)
    assert worst_decile_mean(np.array([0.3, 0.2, 0.9])) == pytest.approx(0.2)  # at least one
    assert math.isnan(worst_decile_mean(np.zeros(0)))
    # the row: clients without a held-out sample (NaN accuracy) are not counted
    t = np.array([[1.0, 0.5, 0.4, 0.75], [2.0, 0.25, np.nan, np.nan], [9.0, np.nan, 9.0, 9.0]])
    row = row_of(t)
    assert list(row) == list(COLUMNS)
    assert row["clients_evaluated"] == 2 and row["client_loss_mean"] == pytest.approx(1.5)
    assert row["client_acc_worst10"] == pytest.approx(0.25)
    assert row["personalized_acc_mean"] == pytest.approx(0.75)


# --- a sampled client's accuracy, recomputed by hand ----------------------------------------------
def _numpy_mlp(flat: np.ndarray, sizes: list[int], x: np.ndarray) -> np.ndarray:
    """Logits of nn.Sequential(Linear, ReLU, ..., Linear) from its flat parameter vector."""
    h, i = x.astype(np.float64), 0
    for layer, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = flat[i:i + a * b].reshape(b, a)
        i += a * b
        bias = flat[i:i + b]
        i += b
        h = h @ w.T + bias
        if layer < len(sizes) - 2:
            h = np.maximum(h, 0.0)
    return h


def test_sampled_clients_accuracy_recomputed_by_hand() -> None:
    sim, rec = _sim(2, evaluation=dict(EVAL, client_test_fraction=0.25))
    last = sim.client_eval.last
    assert last["round"] == 1
    ids, table = last["client_ids"], last["table"]
    ds = sim.dataset  # the held-out split wraps the pooled digits
    inner, seed = ds.inner, sim.sc.seed
    # which clients: 12 of the clients with >= 2 samples, from (seed, 111, round)
    eligible = np.flatnonzero(inner.n_samples >= 2)
    want_ids = np.sort(np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        [seed, 111, 1]))).choice(eligible, size=12, replace=False))
    np.testing.assert_array_equal(ids, want_ids)
    flat = sim.global_flat.astype(np.float64)
    sizes = [64, 32, 10]
    accs = []
    for j, cid in enumerate(ids):
        x, y = inner.client_data(int(cid))  # the client's whole shard
        n = len(y)
        k = int(min(max(math.floor(n * 0.25 + 0.5), 1), n - 1))
        perm = np.random.Generator(np.random.PCG64(np.random.SeedSequence(
            [seed, 112, int(cid)]))).permutation(n)
        test = np.sort(perm[:k])
        acc = float((_numpy_mlp(flat, sizes, x[test]).argmax(1) == y[test]).mean())
        assert table[j, 1] == pytest.approx(acc, abs=1e-12), cid
        accs.append(acc)
        assert sim.pop.n_samples[cid] == n - k  # it trains on the rest
    row = rec.rounds.iloc[1]
    a = np.sort(np.array(accs))
    assert row["clients_evaluated"] == 12
    assert row["client_acc_mean"] == pytest.approx(a.mean())
    assert row["client_acc_median"] == pytest.approx(np.median(a))
    assert row["client_acc_worst10"] == pytest.approx(a[:2].mean())  # ceil(12 / 10) = 2
    assert row["client_acc_p10"] == pytest.approx(a[1] + 0.1 * (a[2] - a[1]))  # position 1.1
    assert math.isnan(row["personalized_acc_mean"])  # personalize_steps 0


def test_off_by_default_and_every_k_rounds() -> None:
    _, rec = _sim(2)
    assert not set(COLUMNS) & set(rec.rounds.columns)  # the tables of shipped scenarios stay
    _, rec = _sim(5, evaluation=dict(EVAL, client_every=2))
    r = rec.rounds
    assert r["clients_evaluated"].tolist() == [12, 0, 12, 0, 12]
    assert r["client_acc_mean"].isna().tolist() == [False, True, False, True, False]


# --- personalisation on strongly non-IID digits ---------------------------------------------------
def test_fine_tuning_personalises_on_non_iid_digits() -> None:
    """Dirichlet(0.05): each client holds one or two digits; 10 local steps on its own training
    split beat the global model on its own held-out split, on average and for the worst 10 %."""
    over = {"data.alpha": 0.05, "data.samples_per_client": 40, "clients_per_round": 30,
            "evaluation": {"clients_per_round": 40, "personalize_steps": 10}}
    _, rec = _sim(6, **over)
    r = rec.rounds
    assert (r["clients_evaluated"] == 40).all()
    gain = r["personalized_acc_mean"] - r["client_acc_mean"]
    assert gain.min() > 0.15, gain.tolist()
    assert (r["personalized_acc_worst10"] >= r["client_acc_worst10"]).all()
    assert (r["personalized_loss_mean"] < r["client_loss_mean"]).all()


# --- every trigger; the torch and LLM workloads ---------------------------------------------------
EDGE_MIX = [{"profile": "edge-server-l4", "share": 0.3}, {"profile": "rpi4", "share": 0.4},
            {"profile": "jetson-orin-nano", "share": 0.3}]
TRIGGERS: dict[str, dict[str, Any]] = {
    "buffered": {"aggregation.method": "fedbuff",
                 "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4,
                                         "max_staleness": 3}},
    "hierarchical": {"population.mix": EDGE_MIX,
                     "hierarchy": {"edges": 4, "edge_profile": "edge-server-l4",
                                   "edge_rounds_per_cloud_round": 2}},
}


@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_every_trigger_records_client_columns(trigger: str) -> None:
    _, rec = _sim(3, evaluation=dict(EVAL, personalize_steps=3), **TRIGGERS[trigger])
    r = rec.rounds
    assert (r["clients_evaluated"] == 12).all()
    assert r[[c for c in COLUMNS if c != "clients_evaluated"]].notna().all().all()


def test_cnn_workload_evaluates_clients() -> None:
    _, rec = _sim(2, model={"kind": "cnn", "params": {"hidden": 16}},
                  evaluation=dict(EVAL, personalize_steps=4))
    r = rec.rounds
    assert (r["clients_evaluated"] == 12).all()
    assert r["client_acc_mean"].between(0, 1).all() and r["personalized_acc_mean"].notna().all()
    # fine-tuning on its own (non-IID) training split lowers each client's held-out loss
    assert (r["personalized_loss_mean"] < r["client_loss_mean"]).all()


TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 4, "intermediate_size": 64, "max_position_embeddings": 16,
        "tie_word_embeddings": False}


def test_llm_workload_evaluates_clients_token_accuracy() -> None:
    over = {"data": {"dataset": "text", "samples_per_client": 6},
            "model": {"kind": "transformer", "family": "llama", "seq_len": 16,
                      "config": dict(TINY, vocab_size=64),
                      "workloads": {"order": ["lora"], "lora_ranks": [4],
                                    "require_deadline": False}},
            "training": {"epochs": 1, "batch_size": 4, "lr": 0.01, "optimizer": "adam"},
            "deadline_s": None, "clients_per_round": 4,
            "evaluation": {"clients_per_round": 4, "personalize_steps": 5}}
    sim, rec = _sim(2, **over)
    r = rec.rounds
    assert (r["clients_evaluated"] == 4).all()
    assert r["client_acc_mean"].between(0, 1).all()
    # fine-tuning the adapters on a client's own text lowers its held-out token loss
    assert (r["personalized_loss_mean"] < r["client_loss_mean"]).all()


# --- identical on local and Ray, and after a crash and resume -------------------------------------
def _table(tmp_path: Path, name: str, **over: Any) -> pd.DataFrame:
    from simulator.loop.runner import run_scenario

    sc = parse_scenario(small_doc(evaluation=dict(EVAL, personalize_steps=3), **over))
    run = run_scenario(sc, name=name, runs_dir=str(tmp_path))
    return pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"])


@pytest.mark.ray
def test_local_and_ray_identical(tmp_path: Path, ray_session: Any) -> None:
    r0 = _table(tmp_path, "local")
    assert (r0["clients_evaluated"] == 12).all()
    r2 = _table(tmp_path, "ray2", **{"executor.kind": "ray", "executor.num_actors": 2,
                                     "executor.num_cpus_per_actor": 1})
    pd.testing.assert_frame_equal(r0, r2, check_exact=True)


def test_crash_and_resume_identical(tmp_path: Path) -> None:
    from simulator.loop.runner import resume_run, run_scenario
    from tests.test_resume import Crash, _assert_same_run, _crash_at, _reference

    doc = small_doc(name="ce", rounds=7, evaluation=dict(EVAL, personalize_steps=3),
                    **{"output.checkpoint_every": 3})
    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), runs_dir=str(tmp_path), on_round=_crash_at(4))
    run = resume_run(tmp_path / "ce")
    _assert_same_run(run, _reference(tmp_path, doc), 7)
    r = pd.read_parquet(run / "rounds.parquet")
    assert (r["clients_evaluated"] == 12).all() and r["personalized_acc_mean"].notna().all()


# --- impossible settings: one line at validation --------------------------------------------------
@pytest.mark.parametrize("over,field", [
    ({"evaluation": {"clients_per_round": 201}}, "evaluation.clients_per_round"),
    ({"evaluation": {"personalize_steps": 5}}, "evaluation.personalize_steps"),
    ({"evaluation": {"clients_per_round": 5}, "mode": "analytic"},
     "evaluation.clients_per_round"),
    ({"evaluation": {"clients_per_round": 5, "client_test_fraction": 1.0}},
     "evaluation.client_test_fraction"),
])
def test_validate_refuses_impossible_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              over: dict[str, Any], field: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_doc(**over), sort_keys=False))
    capsys.readouterr()
    rc = main(["validate", str(f)])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"fedfleet: error: {field}:"), lines


# --- the run page: a client-accuracy band in the model-quality panel ------------------------------
def test_run_page_accuracy_panel_draws_the_client_band() -> None:
    from dashboards import figures as F

    _, rec = _sim(3, evaluation=dict(EVAL, personalize_steps=3, client_every=2))
    r = rec.rounds
    fig = F.accuracy_figure(r)
    band = [t for t in fig.data if t.name == "clients: worst 10% to median"]
    low = [t for t in fig.data if t.name == "clients: worst 10%"]
    pers = [t for t in fig.data if t.name == "clients fine-tuned: median"]
    assert len(band) == len(low) == len(pers) == 1  # one x axis (a switch: time / round)
    assert band[0].fill == "tonexty" and list(fig.data).index(band[0]) == \
        list(fig.data).index(low[0]) + 1  # filled down to the worst-10 % line
    evaluated = r[r["client_acc_median"].notna()]
    np.testing.assert_allclose(band[0].y, evaluated["client_acc_median"])
    np.testing.assert_allclose(low[0].y, evaluated["client_acc_worst10"])
    np.testing.assert_array_equal(band[0].customdata, evaluated["round"])  # 1: not evaluated
    # the x-axis switch moves the band too: its "round" button holds the band's rounds
    switch = fig.layout.updatemenus[0].buttons
    by_round = next(b for b in switch if b.label == "round").args[0]["x"]
    assert by_round[list(fig.data).index(band[0])] == evaluated["round"].astype(float).tolist()
    _, plain = _sim(1)
    assert not [t for t in F.accuracy_figure(plain.rounds).data if "clients" in (t.name or "")]
