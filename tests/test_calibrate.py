"""Calibration (fit, profile output, CLI) and parity with FedScale's completion-time formula."""

import argparse

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import InputError
from simulator.cli.main import main as cli_main
from simulator.cli.profiles import calibrate_main
from simulator.core.cost import TaskCost, estimate, fedscale_completion_s
from simulator.fleet.profiles import load_profile
from simulator.workloads.calibration import fedscale_device_columns, fit_overhead_and_rate
from tests.conftest import ROOT


def test_fit_recovers_overhead_and_rate():
    flops = np.array([1e6, 4e6, 1.6e7, 6.4e7])
    secs = 2e-4 + flops / 2e10
    a, rate = fit_overhead_and_rate(flops, secs)
    assert a == pytest.approx(2e-4, rel=1e-9) and rate == pytest.approx(2e10, rel=1e-9)
    a, rate = fit_overhead_and_rate(flops, flops / 5e9)  # no overhead at all
    assert a == pytest.approx(0.0, abs=1e-12) and rate == pytest.approx(5e9, rel=1e-9)
    # launch-bound (a GPU at batch 16): time does not grow with FLOPs -> rate = the peak given
    a, rate = fit_overhead_and_rate(flops, np.array([1e-3, 1e-3, 0.98e-3, 0.97e-3]), 1e13)
    assert rate == 1e13 and a == pytest.approx(0.9875e-3 - 2.125e7 / 1e13, rel=1e-9)


def test_estimate_adds_step_overhead_only_when_given():
    cost = TaskCost(np.array([0.0]), np.array([0.0]), np.array([1e9]), np.array([0.0]),
                    train_steps=np.array([4.0]))
    one = np.array([1.0])
    base = estimate(one, one, np.zeros(1), np.array([1e9]), cost)
    assert base.compute_s.tolist() == [1.0]
    with_oh = estimate(one, one, np.zeros(1), np.array([1e9]), cost, np.array([0.25]))
    assert with_oh.compute_s.tolist() == [2.0]  # 1 s of FLOPs + 4 steps x 0.25 s
    zero = estimate(one, one, np.zeros(1), np.array([1e9]), cost, np.array([0.0]))
    assert zero.compute_s.tolist() == base.compute_s.tolist()


def test_calibrate_writes_a_valid_measured_profile(tmp_path, capsys):
    out = tmp_path / "me.yaml"
    args = argparse.Namespace(paths=[str(ROOT / "scenarios" / "quickstart.yaml")], out=str(out),
                              budget_s=1.0)
    assert calibrate_main(args) == 0
    prof = load_profile(out)
    assert prof.name.startswith("calibrated-")
    assert prof.compute.source.startswith("measured by fedfleet profiles calibrate on ")
    assert prof.compute.train_flops_per_s > 1e8 and prof.compute.step_overhead_s >= 0
    assert 0 < prof.compute.train_efficiency <= 1
    doc = yaml.safe_load(out.read_text())
    assert doc["compute"]["precision"] == "fp32"
    assert "ms/step" in capsys.readouterr().out


def test_calibration_library_logs_and_the_cli_prints(tmp_path, capsys, caplog):
    """The library (workloads/calibration.py) never prints; `fedfleet profiles calibrate` does."""
    import logging

    from simulator.config.scenario import load_scenario
    from simulator.workloads.calibration import calibrate

    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    written = []
    with caplog.at_level(logging.INFO, logger="simulator.workloads.calibration"):
        done = calibrate(sc, tmp_path / "lib.yaml", 0.3, on_written=lambda f, p: written.append(p))
    assert capsys.readouterr().out == ""
    assert [p for _, p in done] == written and written[0] == tmp_path / "lib.yaml"
    msgs = [r.getMessage() for r in caplog.records if r.name == "simulator.workloads.calibration"]
    assert any(m.startswith("cpu: step overhead") and str(tmp_path / "lib.yaml") in m for m in msgs)
    with pytest.raises(InputError, match=r"^--out: expected a \.yaml path"):
        calibrate(sc, tmp_path / "lib.txt", 0.3)


def test_calibrate_usage_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="usage"):
        calibrate_main(argparse.Namespace(paths=[], out=None))
    assert cli_main(["profiles", "calibrate", str(ROOT / "scenarios" / "quickstart.yaml")]) == 2
    assert "usage: fedfleet profiles calibrate" in capsys.readouterr().err
    bad = tmp_path / "x.yaml"
    bad.write_text("name: [unclosed\n")
    assert cli_main(["profiles", "calibrate", str(bad), "--out", str(tmp_path / "p.yaml")]) == 2


# --- FedScale parity --------------------------------------------------------------------------
# FedScale fedscale/cloud/internal/client_metadata.py, ClientMetadata.get_completion_time:
#   computation   = augmentation_factor (3) * batch_size * local_steps * compute_speed / 1000
#   communication = (upload_size + download_size) / bandwidth   (one bandwidth, both transfers)
def _fedscale_by_hand(batch, steps, ms, up_kbit, down_kbit, kbps):
    return 3.0 * batch * steps * np.asarray(ms) / 1000.0 + (up_kbit + down_kbit) / np.asarray(kbps)


@settings(max_examples=200, deadline=None)
@given(batch=st.integers(1, 256), steps=st.integers(1, 100),
       ms=st.lists(st.floats(0.01, 500.0), min_size=1, max_size=20),
       up_kbit=st.floats(1.0, 1e6), down_kbit=st.floats(1.0, 1e6), kbps_seed=st.integers(0, 2**31),
       flops_per_sample=st.floats(1e3, 1e12))
def test_cost_model_reproduces_fedscale_completion_time(batch, steps, ms, up_kbit, down_kbit,
                                                        kbps_seed, flops_per_sample):
    # Prepare: FedScale's inputs, and our columns configured like FedScale (trace units
    # converted; one bandwidth for both directions, no latency).
    ms = np.array(ms)
    kbps = np.random.default_rng(kbps_seed).uniform(10.0, 1e5, len(ms))
    flops_per_s, bps = fedscale_device_columns(ms, kbps, flops_per_sample)
    n = len(ms)
    cost = TaskCost(download_bytes=np.full(n, down_kbit * 1000 / 8),
                    upload_bytes=np.full(n, up_kbit * 1000 / 8),
                    train_flops=np.full(n, flops_per_sample * batch * steps),
                    memory_bytes=np.zeros(n))
    # Execute
    ours = estimate(bps, bps, np.zeros(n), flops_per_s, cost)
    theirs = fedscale_completion_s(batch, steps, ms, up_kbit, down_kbit, kbps)
    # Assert
    np.testing.assert_allclose(theirs, _fedscale_by_hand(batch, steps, ms, up_kbit, down_kbit,
                                                         kbps), rtol=1e-12)
    np.testing.assert_allclose(ours.total_s, theirs, rtol=1e-12)
    np.testing.assert_allclose(ours.compute_s, 3 * batch * steps * ms / 1000, rtol=1e-12)
    np.testing.assert_allclose(ours.download_s + ours.upload_s, (up_kbit + down_kbit) / kbps,
                               rtol=1e-12)


def test_fedscale_parity_through_the_planner_with_a_clock_proxy():
    # The engine's own path: a clock proxy of P fp32 parameters is 32 P / 1000 kbit each way;
    # FedScale charges (upload + download) / bandwidth, the planner a download and an upload.
    from simulator.config.scenario import parse_scenario
    from simulator.loop.simulation import build_population
    from simulator.planning import make_planner
    from tests.conftest import small_doc

    sc = parse_scenario(small_doc(mode="analytic", **{"model.clock_proxy": {
        "params": 1e6, "train_flops_per_sample": 6e6}}))
    pop, ds = build_population(sc)
    ids = np.arange(20)
    plan = make_planner(sc, pop, ds.n_features, ds.n_classes).plan(0, ids, pop)
    ms = np.linspace(1.0, 80.0, 20)
    kbps = np.linspace(500.0, 50_000.0, 20)
    flops_per_s, bps = fedscale_device_columns(ms, kbps, 6e6)
    ours = estimate(bps, bps, np.zeros(20), flops_per_s, plan.cost)
    samples = pop.n_samples[ids]
    # FedScale's formula with batch * steps = each client's sample count (1 epoch)
    kbit = 1e6 * 4 * 8 / 1000
    theirs = fedscale_completion_s(1, 1, ms * samples, kbit, kbit, kbps)
    np.testing.assert_allclose(ours.total_s, theirs, rtol=1e-12)
    np.testing.assert_allclose(theirs, _fedscale_by_hand(1, 1, ms * samples, kbit, kbit, kbps),
                               rtol=1e-12)
