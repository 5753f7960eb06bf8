"""Population filters that decide who may ever train (pure numpy).

``population.require_link: [wifi]`` keeps clients on other links out of every round, the way
production cross-device FL only schedules phones that are on unmetered Wi-Fi (and charging, which
the profiles' diurnal availability windows model; Bonawitz et al., "Towards Federated Learning at
Scale", SysML 2019). A client's link is fixed at population sampling, so this removes the share
of the fleet drawn on cellular links.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from simulator import InputError
from simulator.fleet.population import LINK_TYPES, Population


def restrict_links(pop: Population, allowed: Sequence[str]) -> int:
    """Make clients whose link is not in ``allowed`` never available; returns how many remain."""
    ok = np.isin(pop.link_idx, [LINK_TYPES.index(name) for name in allowed])
    if not ok.any():
        raise InputError("population.require_link",
                         f"none of the {pop.size} sampled clients is on {', '.join(allowed)}")
    pop.always_on &= ok
    pop.window_len_h[~ok] = 0.0  # an empty daily window: never online
    return int(ok.sum())
