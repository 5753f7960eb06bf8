"""The benchmarks' baselines and runner: honest baselines, and no tracked file edited."""

import numpy as np

from benchmarks import run_all


def test_run_all_writes_under_runs_bench_and_not_the_docs(tmp_path, monkeypatch, capsys):
    docs = tmp_path / "performance.md"
    docs.write_text("# Performance\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n")
    monkeypatch.setattr(run_all, "DOCS", docs)
    monkeypatch.setattr(run_all, "discover", lambda: ["bench_fake"])
    monkeypatch.setattr(run_all, "run_one", lambda n, a, t: run_all.Result(n, 0, 0.1, "| t |\n"))
    out = tmp_path / "bench"
    assert run_all.main(["--out", str(out)]) == 0
    assert "old" in docs.read_text()  # untouched without --write-docs
    (stamp,) = [p for p in out.iterdir() if p.is_dir()]
    assert (stamp / "bench_fake.md").read_text() == "| t |\n"
    assert "bench_fake" in (out / "latest.md").read_text()
    assert run_all.main(["--out", str(out), "--write-docs"]) == 0
    text = docs.read_text()
    assert "old" not in text and "bench_fake" in text and "load " in text


def test_plain_loop_reuses_one_model_and_matches_fedfleet():
    import torch

    from benchmarks.bench_reference import PlainFedAvg, reference_doc
    from simulator.config.scenario import parse_scenario
    from simulator.workloads import build_workload

    doc = reference_doc(2, **{"population.size": 60, "clients_per_round": 10})
    plain = PlainFedAvg(doc)
    model, opt = plain.model, plain.opt
    ids = [3, 7, 11, 40]
    plain.round(0, ids)
    assert plain.model is model and plain.opt is opt  # one model, one optimizer
    # FedFleet's workload trains the same clients the same way: the same FedAvg result
    torch.set_num_threads(1)
    sc = parse_scenario(doc)
    w = build_workload(sc, sc.population.size)
    from simulator.core import rng
    from simulator.core.jobs import JobBatch

    seeds = np.array([rng.int_seed(sc.seed, rng.TRAINING, 0, c) for c in ids], np.uint64)
    g = w.initial_state()
    finals = w.train_clients(g, JobBatch(0, np.array(ids, np.int64), seeds), batched=False)
    n = np.array([len(w._client_data(c)[1]) for c in ids], np.float64)
    avg = (finals.astype(np.float64) * n[:, None]).sum(0) / n.sum()
    np.testing.assert_allclose(plain.global_vec.numpy(), avg, atol=1e-6)


def test_goals_are_collected_from_tables_and_notes():
    """`make bench` repeats every goal a benchmark states (table rows with goal and status
    columns, and note lines that say met / NOT met) in one list at the end."""
    from benchmarks.run_all import goals

    out = """### t
| model | clients | per-client | speed-up | goal | status |
|---|---|---|---|---|---|
| tiny | 16 | 18.8 | 1.33 | >= 5x | NOT met |
| tiny | 64 | 20.4 | 1.40 | >= 5x | NOT met |

| measure | value |
|---|---|
| a goal-less table | 1 |

- goal: batched >= 0.8x the bmm reference: worst 0.55x -> NOT met
- a note without a verdict
"""
    got = goals(out)
    assert got == ["tiny, 16 clients: speed-up 1.33; goal >= 5x -> NOT met",
                   "tiny, 64 clients: speed-up 1.40; goal >= 5x -> NOT met",
                   "goal: batched >= 0.8x the bmm reference: worst 0.55x -> NOT met"]
