"""O(k) availability: the index's count equals the O(N) mask; rejection sampling is exact."""

import numpy as np
import pytest

from simulator.config.scenario import parse_scenario
from simulator.fleet.availability import SPARSE_MIN_POPULATION, AvailabilityIndex
from simulator.fleet.eligibility import restrict_links
from simulator.loop.simulation import build_population
from tests.conftest import small_doc


@pytest.fixture(scope="module")
def pop():
    p, _ = build_population(parse_scenario(small_doc(**{"population.size": 20_000})))
    restrict_links(p, ["wifi", "5g", "ethernet", "datacenter"])  # adds an empty-window group
    return p


def test_count_equals_the_full_mask(pop):
    ix = AvailabilityIndex(pop)
    rs = np.random.default_rng(1)
    times = list(rs.uniform(0, 3 * 86400, 150))
    # Window edges: the hours where clients come online or go offline, exactly.
    times += [float(s) * 3600 for s in pop.window_start_h[:80]]
    times += [float((s + n) % 24) * 3600 for s, n in zip(pop.window_start_h[:80],
                                                          pop.window_len_h[:80], strict=True)]
    times += [0.0, 86400.0, 3600 * 23.999999]
    for t in times:
        assert ix.count(t) == int(np.count_nonzero(pop.available(t))), t


def test_sample_is_deterministic_distinct_and_online(pop):
    ix = AvailabilityIndex(pop)
    t = 5000.0
    n_online = ix.count(t)
    a = ix.sample(t, 130, n_online, np.random.default_rng(3))
    b = ix.sample(t, 130, n_online, np.random.default_rng(3))
    assert a is not None and np.array_equal(a, b)
    assert np.unique(a).size == 130 and pop.available(t, a).all()
    assert ix.sample(t, n_online, n_online, np.random.default_rng(3)) is None  # list them all


def test_sample_is_uniform_over_online_clients():
    p, _ = build_population(parse_scenario(small_doc(**{"population.size": 50})))
    ix = AvailabilityIndex(p)
    t = 7000.0
    n_online = ix.count(t)
    hits = np.zeros(p.size)
    for i in range(4000):
        ids = ix.sample(t, 5, n_online, np.random.default_rng(i), max_draws_per_pick=10**6)
        if ids is not None:
            hits[ids] += 1
    on = p.available(t)
    assert hits[~on].sum() == 0
    expect = 4000 * 5 / n_online
    assert np.all(np.abs(hits[on] - expect) < 5 * np.sqrt(expect))


def test_engine_uses_the_index_only_for_large_populations(tmp_path):
    from simulator.io.recording import Recorder
    from simulator.loop.simulation import Simulation

    small = Simulation(parse_scenario(small_doc(**{"mode": "analytic"})))
    assert small.avail_index is None
    big = Simulation(parse_scenario(small_doc(**{"mode": "analytic",
                                                 "population.size": SPARSE_MIN_POPULATION})))
    assert big.avail_index is not None
    rec = Recorder(tmp_path, "big")
    rec.start()
    for _ in range(3):
        t0 = big.clock_s
        online = int(np.count_nonzero(big.pop.available(t0)))
        big.step(rec)
        assert int(rec._rounds["candidates"][-1][0]) == online
        ids = rec._clients["client_id"][-1]
        assert np.unique(ids).size == ids.size == big.sc.selected_per_round
        assert big.pop.available(t0, ids).all()
