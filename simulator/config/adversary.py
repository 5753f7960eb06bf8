"""Adversarial (Byzantine) clients: which clients attack and how (the ``adversary:`` block).

A seeded ``fraction`` of the population, or every client of ``device_class`` (a profile of
``population.mix``), is Byzantine. Attacks run on the client side, in the workload, as a malicious
client would (simulator/workloads/mlp.py):

- ``sign_flip``: sends ``-scale * delta`` instead of its update delta;
- ``scale``: sends ``scale * delta`` (a boosted update);
- ``gaussian``: sends N(0, scale^2) noise per coordinate (seeded by the job's training seed);
- ``label_flip``: trains on labels ``K - 1 - y`` and sends that honest-looking update.

``clients.parquet`` gains a ``byzantine`` column (only when this block is present).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from simulator.config.base import Strict

ADVERSARY = 101  # rng purpose (simulator/core/rng.py keys 1..10 are the engine's)


class Adversary(Strict):
    fraction: float = Field(0.0, ge=0, le=1, description=(
        "share of the population that is Byzantine, drawn with the scenario's seed"))
    device_class: str | None = Field(None, min_length=1, description=(
        "instead of a fraction: every client of this population.mix profile is Byzantine"))
    attack: Literal["sign_flip", "gaussian", "label_flip", "scale"] = Field(
        "sign_flip", description="what a Byzantine client sends (docs/strategies.md)")
    scale: float = Field(1.0, gt=0, le=1e6, description=(
        "sign_flip / scale: factor on the update; gaussian: noise std"))

    @model_validator(mode="after")
    def _one(self) -> Adversary:
        if self.device_class is not None and self.fraction > 0:
            raise ValueError("give fraction or device_class, not both")
        return self


def adversary_problems(sc: Any) -> list[str]:
    adv = getattr(sc, "adversary", None)
    if adv is None:
        return []
    lines = []
    names = [m.profile for m in sc.population.mix]
    if adv.device_class is not None and adv.device_class not in names:
        lines.append(f"adversary.device_class: '{adv.device_class}' is not a population.mix "
                     f"profile (allowed: {', '.join(names)})")
    if sc.mode == "real" and sc.model.kind != "mlp":
        lines.append(f"adversary: attacks run in the mlp workload only (model.kind is "
                     f"'{sc.model.kind}')")
    return lines


def byzantine_mask(sc: Any, profile_idx: np.ndarray, profile_names: tuple[str, ...]) -> np.ndarray:
    """bool [N]: which clients are Byzantine (deterministic in the seed)."""
    adv = sc.adversary
    n = int(profile_idx.shape[0])
    if adv.device_class is not None:
        return np.asarray(profile_idx == profile_names.index(adv.device_class), bool)
    mask = np.zeros(n, bool)
    k = int(round(adv.fraction * n))
    if k:
        g = np.random.default_rng(np.random.SeedSequence([int(sc.seed), ADVERSARY]))
        mask[g.choice(n, size=k, replace=False)] = True
    return mask
