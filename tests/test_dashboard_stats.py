"""Confidence intervals over seeds and the policy leaderboard, checked by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dashboards import stats as S


def test_t_interval_by_hand() -> None:
    # values 10, 12, 14: mean 12, s = 2 (ddof 1), t(0.975, 2) = 4.3026527297 (tables: 4.303)
    iv = S.t_interval([10.0, 12.0, 14.0])
    assert iv.n == 3 and iv.mean == 12.0
    assert iv.half == pytest.approx(4.3026527297 * 2 / math.sqrt(3), rel=1e-9)
    assert (iv.lo, iv.hi) == pytest.approx((12 - 4.968275, 12 + 4.968275), abs=1e-6)
    # NaN (e.g. a seed that never reached the target) is left out; one value has no interval
    one = S.t_interval([5.0, float("nan")])
    assert (one.mean, one.n) == (5.0, 1) and math.isnan(one.half)
    assert S.t_interval([]).n == 0
    assert S.t_quantile(1) == pytest.approx(12.706204736174698)
    assert S.t_quantile(30) == pytest.approx(2.0422724563012373)


def test_band_over_seeds_matches_t_interval() -> None:
    v = np.array([[0.1, 0.5], [0.3, 0.5], [0.2, np.nan]])
    mean, lo, hi = S.band_over_seeds(v)
    iv = S.t_interval(v[:, 0])
    assert mean[0] == pytest.approx(0.2) and lo[0] == pytest.approx(iv.lo)
    assert hi[0] == pytest.approx(iv.hi)
    assert mean[1] == 0.5 and lo[1] == pytest.approx(0.5)  # two equal values: zero width


def _runs() -> pd.DataFrame:
    return pd.DataFrame({
        "group": ["random", "random", "oort", "oort", "fair", "fair"],
        "time_to_target_s": [3000.0, 2000.0, 1000.0, 2000.0, np.nan, np.nan],
        "final_accuracy": [0.80, 0.84, 0.83, 0.85, 0.86, 0.90],
        "jain": [0.30, 0.32, 0.20, 0.22, 0.60, 0.64],
        "energy_j": [300e3, 340e3, 160e3, 170e3, 500e3, 520e3],
    })


def test_leaderboard_ordering() -> None:
    lb = S.leaderboard(_runs())
    # time to target, lower first; "fair" never reached it: last
    assert lb["group"].tolist() == ["oort", "random", "fair"]
    assert lb["rank"].tolist() == [1, 2, 3]
    assert lb.loc[0, "time_to_target_s"] == 1500.0
    assert lb.loc[0, "time_to_target_s_ci"] == pytest.approx(
        12.706204736174698 * math.sqrt(500_000) / math.sqrt(2))
    assert lb["reached"].tolist() == [2, 2, 0]
    assert S.leaderboard(_runs(), "final_accuracy")["group"].tolist() == ["fair", "oort",
                                                                         "random"]
    assert S.leaderboard(_runs(), "jain")["group"].tolist() == ["fair", "random", "oort"]
    assert S.leaderboard(_runs(), "energy_j")["group"].tolist() == ["oort", "random", "fair"]
    # ties on the sort key: the higher final accuracy first, then the name
    tie = pd.DataFrame({"group": ["b", "a", "c"], "time_to_target_s": [10.0, 10.0, 10.0],
                        "final_accuracy": [0.5, 0.5, 0.7]})
    assert S.leaderboard(tie)["group"].tolist() == ["c", "a", "b"]
    with pytest.raises(ValueError, match="sort_by"):
        S.leaderboard(_runs(), "speed")


def test_leaderboard_text_one_unit_per_column() -> None:
    text = S.leaderboard_text(S.leaderboard(_runs()))
    head, first, _, last = text.splitlines()
    assert "time to target (min)" in head and "client energy (kJ)" in head
    assert "final accuracy (%)" in head
    # oort: 1500 s = 25.00 min +- 12.706 * 707.1 / 1.414 / 60
    assert first.split()[:2] == ["1", "oort"] and "25.00 ± 105.89" in first
    assert "0 of 2" in last and "–" in last
