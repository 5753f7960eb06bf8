"""The adversary as a server-chain step: it knows which clients are Byzantine (the scenario's
``adversary:`` block, simulator/config/adversary.py), hands that to the training jobs (the
``byzantine`` assignment column, read by the workload, where the attack runs) and records it in
``clients.parquet``. It changes nothing on the server: defending is the strategy's job."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.config.adversary import byzantine_mask


class AdversaryStep:
    name = "adversary"

    def __init__(self, scenario: Any, pop: Any) -> None:
        self.mask = byzantine_mask(scenario, pop.profile_idx, pop.profile_names)

    def assign(self, ids: np.ndarray) -> np.ndarray:
        return self.mask[np.asarray(ids, np.int64)]

    def record(self, rnd: int, ids: np.ndarray, released: np.ndarray, row: dict[str, Any],
               cols: dict[str, np.ndarray], state: Any = None) -> None:
        cols["byzantine"] = self.assign(ids)
        row["byzantine_completed"] = int((self.assign(ids) & released).sum())


def adversary_step(scenario: Any, pop: Any) -> AdversaryStep | None:
    return AdversaryStep(scenario, pop) if getattr(scenario, "adversary", None) else None
