"""Central DP accounts the sampling process the engine really runs (issue 14, item 5).

The sync trigger invites ceil(k * overcommit) of the clients online at the round's start,
uniformly (selection.policy random), so a client's chance of being in round r is
q_r = invited_r / online_r: the ``selected`` and ``candidates`` columns of rounds.parquet. The
tests recompute epsilon from those columns with dp-accounting's own RDP accountant (one
``PoissonSampledDpEvent(q_r, GaussianDpEvent(z))`` per round), independently of FedFleet's ledger.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.loop.runner import run_scenario
from tests.conftest import small_doc

dp_accounting = pytest.importorskip("dp_accounting")

ROOT = Path(__file__).resolve().parents[1]
logging.getLogger("absl").setLevel(logging.ERROR)  # dp-accounting's per-order convergence notes


def _independent_epsilons(q: list[float], z: float, delta: float) -> list[float]:
    """Epsilon after each round, composing one subsampled Gaussian per round with its own q."""
    acc = dp_accounting.rdp.RdpAccountant()
    out = []
    for qr in q:
        gauss = dp_accounting.GaussianDpEvent(z)
        acc.compose(gauss if qr >= 1.0 else dp_accounting.PoissonSampledDpEvent(qr, gauss))
        out.append(float(acc.get_epsilon(delta)))
    return out


def _quickstart(tmp_path: Path, **privacy: Any) -> pd.DataFrame:
    doc = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    doc["privacy"] = {"mode": "central", "noise_multiplier": 1.0, **privacy}
    doc["mode"] = "analytic"  # the selection process does not depend on what the model learns
    doc["output"] = {"checkpoint_every": 0}
    run = run_scenario(parse_scenario(doc), name="qs-dp", runs_dir=str(tmp_path))
    return pd.read_parquet(run / "rounds.parquet")


def test_quickstart_epsilon_is_the_accountants_for_invited_over_online(tmp_path: Path) -> None:
    r = _quickstart(tmp_path)
    assert (r["selected"] == 130).all()  # ceil(100 * 1.3) invited every round
    q = (r["selected"] / r["candidates"]).tolist()
    assert min(q) > 0.25  # about half of the 1,000 clients are online: q ~ 0.26, not k/N = 0.1
    expect = _independent_epsilons(q, 1.0, 1e-5)
    np.testing.assert_allclose(r["epsilon"].to_numpy(), expect, rtol=1e-12, atol=0)
    np.testing.assert_allclose(r["privacy_q"].to_numpy(), q, rtol=0, atol=0)
    # The old accounting (q = clients_per_round / population.size = 0.1) under-reported it.
    old = _independent_epsilons([0.1] * len(r), 1.0, 1e-5)[-1]
    assert r["epsilon"].iloc[-1] > 2 * old


def test_explicit_sampling_rate_is_used_as_given(tmp_path: Path) -> None:
    r = _quickstart(tmp_path, sampling_rate=0.05)
    assert (r["privacy_q"] == 0.05).all()
    expect = _independent_epsilons([0.05] * len(r), 1.0, 1e-5)
    np.testing.assert_allclose(r["epsilon"].to_numpy(), expect, rtol=1e-12, atol=0)


@pytest.mark.parametrize("policy", ["oort", "power_of_choice", "deadline", "tifl", "fair"])
def test_central_dp_refuses_non_uniform_selectors(policy: str) -> None:
    doc = small_doc(**{"privacy.mode": "central", "selection.policy": policy})
    with pytest.raises(ScenarioError) as err:
        parse_scenario(doc)
    line = str(err.value)
    assert "privacy.mode" in line and policy in line and "\n" not in line.strip()


@pytest.mark.parametrize("policy", ["oort", "power_of_choice"])
def test_local_dp_accepts_any_selector(policy: str) -> None:
    parse_scenario(small_doc(**{"privacy.mode": "local", "selection.policy": policy}))


def test_buffered_charges_every_aggregation_without_amplification(tmp_path: Path) -> None:
    """FedBuff's waves are not a Poisson subsample: each aggregation is a Gaussian mechanism with
    sensitivity m*C (m: the most updates one client has in the buffer), q = 1."""
    doc = small_doc(**{"privacy.mode": "central", "privacy.noise_multiplier": 2.0,
                       "mode": "analytic", "population.size": 12, "rounds": 4,
                       "clients_per_round": 10,
                       "aggregation.method": "fedbuff",
                       "aggregation.fedbuff": {"concurrency": 6, "buffer_size": 10,
                                               "max_staleness": 100}})
    run = run_scenario(parse_scenario(doc), name="fb", runs_dir=str(tmp_path))
    r = pd.read_parquet(run / "rounds.parquet")
    c = pd.read_parquet(run / "clients.parquet")
    assert (r["privacy_q"] == 1.0).all()
    acc = dp_accounting.rdp.RdpAccountant()
    expect, ms = [], []
    for rnd in r["round"]:
        used = c[(c["round"] == rnd) & (c["outcome"] == "completed")]
        m = int(used["client_id"].value_counts().max()) if len(used) else 1
        ms.append(m)
        acc.compose(dp_accounting.GaussianDpEvent(2.0 / m))
        expect.append(float(acc.get_epsilon(1e-5)))
    assert max(ms) > 1  # some client sent two updates to one buffer: sensitivity 2C
    np.testing.assert_allclose(r["epsilon"].to_numpy(), expect, rtol=1e-12, atol=0)


def test_resumed_run_continues_the_ledger(tmp_path: Path) -> None:
    """The summed RDP curve is checkpointed: crash after round 3, resume, same epsilons."""
    from simulator.loop.runner import resume_run

    over = {"privacy.mode": "central", "privacy.noise_multiplier": 1.0, "mode": "analytic",
            "rounds": 6}
    ref = run_scenario(parse_scenario(small_doc(**over, **{"output.checkpoint_every": 0})),
                       name="ref", runs_dir=str(tmp_path / "ref"))

    class Crash(Exception):
        pass

    def crash(rep: Any) -> None:
        if rep.round == 3:
            raise Crash

    with pytest.raises(Crash):
        run_scenario(parse_scenario(small_doc(**over, **{"output.checkpoint_every": 2})),
                     name="c", runs_dir=str(tmp_path / "c"), on_round=crash)
    run = resume_run(tmp_path / "c" / "c")
    a = pd.read_parquet(ref / "rounds.parquet")["epsilon"].to_numpy()
    b = pd.read_parquet(run / "rounds.parquet")["epsilon"].to_numpy()
    assert len(a) == 6 and np.array_equal(a, b)


def test_old_central_checkpoint_is_refused() -> None:
    from simulator.errors import FedFleetError
    from simulator.privacy.accountant import PrivacyLedger

    ledger = PrivacyLedger("central", 0.1, 1.0, 1e-5, population_size=10)
    with pytest.raises(FedFleetError, match="privacy__rdp"):
        ledger.load_state_dict({})  # a checkpoint of the stateless ledger had no key
