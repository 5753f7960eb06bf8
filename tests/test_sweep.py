"""Sweeps: grid parsing and validation (no Ray), and a tiny 3 policies x 2 seeds sweep (Ray)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from simulator import InputError
from simulator.cli.main import main
from simulator.sweep.grid import expand, parse_grid, validate
from simulator.sweep.results import jain_index
from simulator.sweep.run import run_sweep
from tests.conftest import small_doc


def tiny_file(tmp_path, **over):
    doc = small_doc(**{"population.size": 40, "clients_per_round": 4, "rounds": 3, **over})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, doc


# --- no Ray ---------------------------------------------------------------------------------------
def test_parse_grid_values_and_lists():
    g = parse_grid(["selection.policy=random,oort", "model.hidden=[64,32],[16]",
                    "selection.oort.alpha=1,2.5"])
    assert [v for _, v in g["selection.policy"]] == ["random", "oort"]
    assert [v for _, v in g["model.hidden"]] == [[64, 32], [16]]
    assert [v for _, v in g["selection.oort.alpha"]] == [1, 2.5]


@pytest.mark.parametrize("item, msg", [
    ("selection.policy", "expected KEY=V1,V2"),
    ("selection..policy=a", "invalid key"),
    ("seed=1,2", "use --seeds"),
    ("executor.kind=ray", "executor.kind local"),
    ("rounds=1,,2", "empty value"),
    ("rounds=1,1", "listed twice"),
])
def test_bad_grid_syntax(item, msg):
    with pytest.raises(InputError, match=msg):
        parse_grid([item])


def test_grid_key_given_twice():
    with pytest.raises(InputError, match="given twice"):
        parse_grid(["rounds=1", "rounds=2"])


def test_expand_deduplicates_other_policies_parameters():
    doc = small_doc()
    grid = parse_grid(["selection.policy=random,oort,tifl", "selection.oort.alpha=1,2"])
    variants, dropped = expand(doc, grid, seeds=2)
    labels = sorted({v.label for v in variants})
    assert labels == ["policy=oort,alpha=1", "policy=oort,alpha=2", "policy=random",
                      "policy=tifl"]
    assert dropped == 4 and len(variants) == 8
    assert {v.seed for v in variants} == {7, 8}  # the scenario's seed, seed + 1
    assert len({v.name for v in variants}) == 8
    rnd = next(v for v in variants if v.label == "policy=random")
    assert rnd.overrides == {"selection.policy": "random"}


def test_every_variant_is_validated_before_ray(tmp_path):
    doc = small_doc()
    with pytest.raises(InputError) as ei:
        validate(doc, parse_grid(["selection.policy=random,oort", "selection.oort.alpha=1,-3"]))
    assert str(ei.value).startswith("--grid: variant policy=random,alpha=-3: selection.oort.alpha")
    # Dropped by deduplication for policy random, but a misspelt key is still an error.
    with pytest.raises(InputError, match="variant alpah=1: selection.oort.alpah: unknown field"):
        validate(doc, parse_grid(["selection.oort.alpah=1"]))
    validate(doc, parse_grid(["selection.policy=random,oort", "selection.oort.alpha=1,2"]))


@pytest.mark.parametrize("args, msg", [
    (["--grid", "selection.policy=random,bogus"], "--grid: variant policy=bogus: selection.policy"),
    (["--grid", "nosuch.key=1"], "--grid: variant key=1: nosuch: unknown field"),
    (["--grid", "selection.policy"], "--grid: expected KEY=V1,V2"),
    (["--seeds", "0"], "--seeds: must be between 1 and 1000"),
    (["--target-accuracy", "1.5"], "--target-accuracy: must be in (0, 1]"),
    (["--search-alg", "nope"], "--search-alg: unknown search algorithm 'nope'"),
    (["--scheduler", "nope"], "--scheduler: unknown scheduler 'nope'"),
])
def test_cli_user_errors_exit_2_with_one_line(tmp_path, capsys, args, msg):
    path, _ = tiny_file(tmp_path)
    rc = main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith(f"fedfleet: error: {msg}"), err
    assert not (tmp_path / "runs").exists()  # nothing started, nothing written


def test_existing_sweep_needs_overwrite(tmp_path, capsys):
    path, _ = tiny_file(tmp_path)
    (tmp_path / "runs" / "s").mkdir(parents=True)
    assert main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--name", "s"]) == 2
    assert "already exists" in capsys.readouterr().err
    rc = main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--name", "s",
               "--overwrite"])
    assert rc == 2 and "is not a sweep directory" in capsys.readouterr().err


def test_jain_index_counts_absent_clients_as_zero():
    assert jain_index([1, 1, 1, 1], 4) == pytest.approx(1.0)
    assert jain_index([4], 4) == pytest.approx(0.25)
    assert jain_index([2, 2], 4) == pytest.approx(0.5)


# --- Ray ------------------------------------------------------------------------------------------
@pytest.mark.ray
def test_three_policies_two_seeds_sweep(tmp_path, ray_session):
    path, _ = tiny_file(tmp_path)
    lines = []
    res = run_sweep(path, ["selection.policy=random,oort,tifl"], seeds=2, name="pol",
                    runs_dir=str(tmp_path / "runs"), max_concurrent=2, log=lines.append,
                    backend="ray")
    sweep_dir = tmp_path / "runs" / "pol"
    assert res.sweep_dir == sweep_dir and not res.failures
    t = pd.read_parquet(sweep_dir / "sweep.parquet")
    assert len(t) == 6 and (t["status"] == "ok").all()
    assert sorted(t["label"].unique()) == ["policy=oort", "policy=random", "policy=tifl"]
    for col in ("selection.policy", "seed", "time_to_target_s",
                "final_accuracy", "rounds", "jain_fairness", "wasted_device_s", "bytes_up",
                "bytes_down", "energy_j", "target_accuracy"):
        assert col in t.columns, col
    assert (t["rounds"] == 3).all() and t["jain_fairness"].between(0, 1).all()
    for name in t["variant"]:
        run = sweep_dir / name
        scenario = json.loads((run / "manifest.json").read_text())["scenario"]
        assert scenario["executor"]["kind"] == "local"
    html = sweep_dir / "comparison.html"
    assert res.dashboard == html and html.stat().st_size > 10_000
    assert (sweep_dir / "_tune").is_dir()  # Ray Tune's files stay inside the sweep
    assert json.loads((sweep_dir / "sweep.json").read_text())["seeds"] == 2
    assert any(line.startswith("[6/6, ") and "ETA 0 s]" in line for line in lines)
    # the process pool gives the same runs, bit for bit, and the same results table
    pool = run_sweep(path, ["selection.policy=random,oort,tifl"], seeds=2, name="pool",
                     runs_dir=str(tmp_path / "runs"), max_concurrent=2, log=lambda m: None,
                     backend="processes")
    assert not pool.failures and not (tmp_path / "runs" / "pool" / "_tune").exists()
    for name in t["variant"]:
        for table in ("rounds", "clients"):
            a = pd.read_parquet(sweep_dir / name / f"{table}.parquet").drop(columns="wall_s",
                                                                             errors="ignore")
            b = pd.read_parquet(tmp_path / "runs" / "pool" / name / f"{table}.parquet").drop(
                columns="wall_s", errors="ignore")
            pd.testing.assert_frame_equal(a, b, check_exact=True)
    cols = [c for c in t.columns if c not in ("wall_s", "run_dir")]
    pd.testing.assert_frame_equal(t[cols], pd.read_parquet(pool.parquet)[cols], check_exact=True)
    for r in (res, pool):
        assert r.startup is not None and r.startup.trials == 6 and r.startup.slots <= 2


# --- process pool (no Ray) ------------------------------------------------------------------------
def test_grid_sweep_runs_in_a_process_pool_by_default(tmp_path):
    path, _ = tiny_file(tmp_path)
    lines = []
    res = run_sweep(path, ["selection.policy=random,oort"], seeds=2, name="pool",
                    runs_dir=str(tmp_path / "runs"), max_concurrent=2, log=lines.append,
                    dashboard=False)
    assert not res.failures
    t = pd.read_parquet(res.parquet)
    assert len(t) == 4 and (t["status"] == "ok").all() and (t["rounds"] == 3).all()
    meta = json.loads((res.sweep_dir / "sweep.json").read_text())
    assert meta["backend"]["kind"] == "processes"
    assert meta["startup"]["trials"] == 4 and meta["startup"]["backend"] == "processes"
    # two worker processes, reused: fewer processes than trials
    assert res.startup.processes <= 2 < res.startup.trials
    assert any("backend processes" in ln for ln in lines)
    assert any(ln.startswith("[4/4, ") for ln in lines)
    assert any("starting things" in ln for ln in lines)


def test_a_failing_trial_does_not_stop_the_pool(tmp_path):
    # a FedAvg-incompatible value only in one variant: validate accepts both (it is a run-time
    # failure we provoke with a missing plugin module resolved only in the worker)
    path, _ = tiny_file(tmp_path)
    from simulator.sweep import pool

    res = pool._trial(({"name": "x", "label": "x", "overrides": {}, "seed": 1},
                       {"doc": {"rounds": "not a number"}, "sweep_dir": str(tmp_path)}))
    assert res["error"] and res["metrics"] == {}


@pytest.mark.parametrize("kw, msg", [
    ({"backend": "processes", "search_alg": "random"}, "--backend: processes cannot run"),
    ({"backend": "threads"}, "--backend: must be one of auto, processes, ray"),
])
def test_backend_choice_is_checked(tmp_path, kw, msg):
    path, _ = tiny_file(tmp_path)
    with pytest.raises(InputError, match=msg):
        run_sweep(path, ["selection.policy=random,oort"], runs_dir=str(tmp_path / "r"), **kw)


def test_auto_backend_takes_ray_tune_for_searchers_schedulers_and_clusters(monkeypatch):
    from simulator.sweep.pool import choose_backend

    assert choose_backend("auto", "grid", "fifo")[0] == "processes"
    assert choose_backend("auto", "optuna", "fifo")[0] == "ray"
    assert choose_backend("auto", "grid", "async_hyperband")[0] == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    kind, why = choose_backend("auto", "grid", "fifo")
    assert kind == "ray" and "RAY_ADDRESS" in why


def test_grid_value_that_pyyaml_cannot_convert_is_a_one_line_error():
    from simulator import InputError
    from simulator.sweep.grid import parse_grid

    with pytest.raises(InputError, match="--grid"):
        parse_grid(["rounds=2001-13-45"])
