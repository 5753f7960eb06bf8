"""The sweep's start-up accounting (simulator/sweep/startup.py), hand-computed."""

import math

from simulator.sweep.startup import max_overlap, startup_report


def trial(pid, entered, start, end, rounds):
    return {"pid": pid, "t_entered": entered, "t_run_start": start, "t_run_end": end,
            "rounds_wall_s": rounds}


def test_two_slots_four_trials_hand_computed():
    clock = {"t_start": 100.0, "t_ray_ready": 104.0, "t_end": 130.0}
    # Two actor processes reused for two trials each: the first trial in each process pays
    # the imports (2 s before run_scenario), later ones 0.1 s.
    ms = [trial(1, 106.0, 108.0, 116.0, 6.0), trial(2, 106.5, 108.5, 117.5, 7.0),
          trial(1, 116.5, 116.6, 124.6, 7.5), trial(2, 118.0, 118.1, 127.1, 8.5)]
    r = startup_report(ms, clock)
    assert r is not None
    assert (r.slots, r.trials, r.processes) == (2, 4, 2)
    assert math.isclose(r.backend_s, 4.0) and math.isclose(r.first_trial_s, 2.0)
    # entry (start - entered): 2, 2, 0.1, 0.1; set-up (end - start - rounds): 2, 2, 0.5, 0.5;
    # each process's first run pays 2 - 0.5 (the median of the later runs) extra
    entry, extra = 2 + 2 + 0.1 + 0.1, 1.5 + 1.5
    assert math.isclose(r.trial_overhead_s, entry + extra)
    assert math.isclose(r.setup_s, 5.0 - extra)
    assert math.isclose(r.starting_s, 4 + 2 + (entry + extra) / 2)
    assert math.isclose(r.starting_share, (4 + 2 + (entry + extra) / 2) / 30)
    assert math.isclose(r.setup_share, 2.0 / (2 * 30))
    assert math.isclose(r.rounds_share, 29.0 / (2 * 30))
    assert "starting things" in r.line()


def test_trials_without_stamps_are_left_out():
    clock = {"t_start": 0.0, "t_ray_ready": 1.0, "t_end": 10.0}
    assert startup_report([{"run_name": "x"}, {}], clock) is None
    r = startup_report([{}, trial(7, 2.0, 3.0, 9.0, 5.0)], clock)
    assert r is not None and r.trials == 1 and r.slots == 1


def test_overlap_counts_touching_intervals_once():
    assert max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert max_overlap([(0, 3), (1, 2), (1.5, 4)]) == 3
