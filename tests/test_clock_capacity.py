"""Shared capacity (simulator/fleet/capacity.py, simulator/loop/shared.py): hand-computed split
server with 1, 2 and 4 attached clients, a shared server link, and both in a real round."""

import numpy as np
import pytest

from simulator.config.scenario import parse_scenario
from simulator.fleet.capacity import fluid_share, maxmin_rates, processor_share
from simulator.loop.simulation import Simulation
from tests.conftest import small_doc


@pytest.mark.parametrize("m", [1, 2, 4])
def test_split_server_shared_by_m_equal_clients(m):
    # each needs 10 s of the server alone; m at once share it equally: all finish at 10 m
    assert processor_share(np.full(m, 10.0)).tolist() == [10.0 * m] * m


def test_split_server_unequal_demands_hand_computed():
    # 4 clients needing 1, 2, 3, 4 s alone: rates 1/4 until the first is done at 4 s;
    # then 1/3: the second's remaining 1 s takes 3 s (7 s); then 1/2: 2 s more (9 s); last 10 s.
    assert processor_share(np.array([3.0, 1.0, 4.0, 2.0])).tolist() == [9.0, 4.0, 10.0, 7.0]
    # FedBuff: two tasks already attached count as competitors that stay
    assert processor_share(np.array([10.0]), extra=2).tolist() == [30.0]


def test_maxmin_rates():
    assert maxmin_rates(np.array([20.0, 100.0]), 100.0).tolist() == [20.0, 80.0]
    assert maxmin_rates(np.array([100.0, 100.0]), 100.0).tolist() == [50.0, 50.0]
    assert maxmin_rates(np.array([10.0, 20.0]), 100.0).tolist() == [10.0, 20.0]
    assert maxmin_rates(np.array([10.0, 50.0, 50.0]), 70.0).tolist() == [10.0, 30.0, 30.0]


def test_shared_server_link_hand_computed():
    # 100 Mbit/s server link; A: 150 Mbit from 0 s, B: 100 Mbit from 1 s, both on fast links.
    # 0-1 s A alone at 100 (50 left); then 50 each: A done at 2 s, B has 50 left -> 2.5 s.
    got = fluid_share(np.array([0.0, 1.0]), np.array([150e6, 100e6]), np.array([1e9, 1e9]),
                      100e6)
    assert got == pytest.approx([2.0, 2.5], rel=1e-12)
    # the slow client keeps its own 20 Mbit/s, the other gets the remaining 80
    got = fluid_share(np.zeros(2), np.array([100e6, 100e6]), np.array([20e6, 1e9]), 100e6)
    assert got == pytest.approx([5.0, 1.25], rel=1e-12)
    # no capacity: everyone at its own link
    got = fluid_share(np.zeros(2), np.array([100e6, 100e6]), np.array([20e6, 1e9]), None)
    assert got.tolist() == [5.0, 0.1]


def _always_on(**over):
    return small_doc(**{"mode": "analytic", "dynamics.enabled": False,
                        "population.mix": [{"profile": "edge-server-l4", "share": 1.0}],
                        "population.size": 40, "clients_per_round": 8, "overcommit": 1.0,
                        "deadline_s": None, **over})


def test_a_round_with_a_shared_server_egress():
    """8 invited edge servers download a 20 MB model through a 16 Mbit/s server egress: the
    link, not their own, is the bottleneck, so every download ends at 8 x 20 MB x 8 / 16e6 s
    (plus the round trip before it)."""
    sc = parse_scenario(_always_on(**{"capacity.server_egress_bits_per_s": 16e6}))
    sim = Simulation(sc)
    ids = np.arange(8)
    from simulator.core import rng as R
    from simulator.loop import pipeline as P

    la = P.launch(sim, 0, 0.0, ids, R.stream(0, R.DROPOUT, 0))
    nbytes = float(np.asarray(la.plan.cost.download_bytes)[0])
    lat = sim.pop.latency_s[ids].astype(np.float64)
    assert np.all(lat == lat[0])
    assert la.timing.download_s == pytest.approx(lat + 8 * nbytes * 8 / 16e6, rel=1e-9)
    free = P.launch(Simulation(parse_scenario(_always_on())), 0, 0.0, ids,
                    R.stream(0, R.DROPOUT, 0))
    assert np.all(free.timing.download_s < la.timing.download_s)
