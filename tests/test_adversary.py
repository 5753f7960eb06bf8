"""Byzantine clients (``adversary:``, simulator/config/adversary.py): who attacks, what they send,
and robust rules holding up where FedAvg does not."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import simulator
from simulator.config.adversary import byzantine_mask
from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.core.jobs import JobBatch
from tests.conftest import ROOT, small_doc


def _sc(**adv: Any) -> Any:
    return parse_scenario(small_doc(**{"aggregation.strategy": "median", "adversary": adv}))


def test_fraction_is_seeded_and_exact() -> None:
    from simulator.loop.simulation import build_population

    sc = _sc(fraction=0.2)
    pop, _ = build_population(sc)
    m = byzantine_mask(sc, pop.profile_idx, pop.profile_names)
    assert m.sum() == 40 and m.dtype == bool
    np.testing.assert_array_equal(m, byzantine_mask(sc, pop.profile_idx, pop.profile_names))
    other = parse_scenario(dict(small_doc(seed=8), adversary={"fraction": 0.2}))
    assert not np.array_equal(m, byzantine_mask(other, pop.profile_idx, pop.profile_names))


def test_device_class_marks_that_class() -> None:
    from simulator.loop.simulation import build_population

    sc = _sc(device_class="rpi4")
    pop, _ = build_population(sc)
    m = byzantine_mask(sc, pop.profile_idx, pop.profile_names)
    np.testing.assert_array_equal(m, pop.profile_idx == pop.profile_names.index("rpi4"))
    assert 0 < m.sum() < pop.size


def test_bad_adversary_blocks_are_one_line_errors() -> None:
    with pytest.raises(ScenarioError, match="give fraction or device_class, not both"):
        _sc(fraction=0.1, device_class="rpi4")
    with pytest.raises(ScenarioError, match=r"adversary\.device_class: 'tv' is not a "
                                            r"population\.mix profile \(allowed: phone-lowend"):
        _sc(device_class="tv")
    with pytest.raises(ScenarioError, match=r"adversary\.attack"):
        _sc(fraction=0.1, attack="nope")


def _updates(adv: dict[str, Any] | None, byzantine: bool) -> np.ndarray:
    """One client's individual update from the MLP workload, honest or attacking."""
    from simulator.workloads.mlp import MLPWorkload

    doc = small_doc(**{"aggregation.strategy": "median"})
    if adv is not None:
        doc["adversary"] = adv
    w = MLPWorkload(parse_scenario(doc), 200)
    g = w.initial_state()
    jobs = JobBatch(0, np.array([3], np.int64), np.array([12345], np.uint64),
                    {"byzantine": np.array([byzantine])})
    part = w.train(g, jobs)
    assert part.updates is not None
    return part.updates[0]


def test_attacks_change_what_the_client_sends() -> None:
    honest = _updates(None, False)
    assert np.abs(honest).max() > 0
    np.testing.assert_array_equal(_updates({"fraction": 0.5, "attack": "sign_flip"}, False),
                                  honest)  # an honest client of an attacked run
    np.testing.assert_allclose(_updates({"fraction": 0.5, "attack": "sign_flip", "scale": 4.0},
                                        True), -4.0 * honest, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_updates({"fraction": 0.5, "attack": "scale", "scale": 3.0}, True),
                               3.0 * honest, rtol=1e-5, atol=1e-6)
    noise = _updates({"fraction": 0.5, "attack": "gaussian", "scale": 0.5}, True)
    assert abs(noise.std() - 0.5) < 0.05 and abs(np.corrcoef(noise, honest)[0, 1]) < 0.1
    np.testing.assert_array_equal(noise, _updates({"fraction": 0.5, "attack": "gaussian",
                                                   "scale": 0.5}, True))  # seeded
    flipped = _updates({"fraction": 0.5, "attack": "label_flip"}, True)
    assert np.isfinite(flipped).all() and not np.allclose(flipped, honest)


def _byz_doc(strategy: str, rounds: int = 60) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load((ROOT / "scenarios" / "byzantine-robust.yaml").read_text())
    doc["rounds"] = rounds
    doc["aggregation"] = {"strategy": strategy}
    return doc


def test_tables_say_who_attacked() -> None:
    r = simulator.run(_byz_doc("median", rounds=3), recorder="memory")
    c = r.clients
    assert c["byzantine"].dtype == bool and c["byzantine"].any() and not c["byzantine"].all()
    done = c[c["outcome"] == "completed"]
    np.testing.assert_array_equal(r.rounds["byzantine_completed"].to_numpy(),
                                  done.groupby("round")["byzantine"].sum().to_numpy())


def test_median_and_krum_hold_up_where_fedavg_does_not() -> None:
    """scenarios/byzantine-robust.yaml, 60 rounds: the sign-flip x4 attack (20%) ruins FedAvg;
    median and Krum keep learning (docs/strategies.md has the 100-round, 3-seed table)."""
    acc = {s: float(simulator.run(_byz_doc(s), recorder="memory").rounds["accuracy"].iloc[-1])
           for s in ("fedavg", "median", "krum")}
    assert acc["median"] > acc["fedavg"] + 0.2, acc
    assert acc["krum"] > acc["fedavg"] + 0.2, acc
