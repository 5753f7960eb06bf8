"""Issue 17: a run's data reach the live app by time, not only every 100 rounds.

The recorder writes a chunk once ``flush_seconds`` of wall time passed since the last one; the
recorder's clock is replaced by one that a callback moves 6 s per round (a slow round), and the
live reader (dashboards.data.load_run on ``NAME.partial``) must see every finished round by the
next round, for synchronous rounds and FedBuff alike. Chunking must not change the tables.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from tests.conftest import small_doc

FEDBUFF = {"aggregation.method": "fedbuff",
           "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4, "max_staleness": 3}}


def _tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"]),
            pd.read_parquet(run / "clients.parquet"))


@pytest.mark.parametrize("kind", ["sync", "fedbuff"])
def test_rounds_are_visible_within_seconds(tmp_path: Path, kind: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import simulator
    import simulator.io.recording as recording
    from dashboards.data import load_run

    doc = small_doc(rounds=6, **(FEDBUFF if kind == "fedbuff" else {}))
    # the reference: no wall time passes, so only the end of the run writes chunks
    monkeypatch.setattr(recording, "time", SimpleNamespace(monotonic=lambda: 0.0))
    simulator.run(doc, name="ref", runs_dir=tmp_path)

    now = [0.0]
    monkeypatch.setattr(recording, "time", SimpleNamespace(monotonic=lambda: now[0]))
    seen: list[tuple[int, int]] = []

    def slow_round(sim: Any, report: Any) -> None:
        live = load_run(tmp_path / "timed.partial")
        seen.append((report.round, len(live.rounds)))
        now[0] += 6.0  # this round took 6 s of wall time

    simulator.run(doc, name="timed", runs_dir=tmp_path, callbacks=[slow_round])
    # round 0 is buffered (no time had passed); every later round is on disk when it ends
    assert seen[0] == (0, 0)
    assert all(on_disk == rnd + 1 for rnd, on_disk in seen[1:]), seen
    # the chunks changed, the tables did not
    ref, timed = _tables(tmp_path / "ref"), _tables(tmp_path / "timed")
    pd.testing.assert_frame_equal(ref[0], timed[0])
    pd.testing.assert_frame_equal(ref[1], timed[1])
