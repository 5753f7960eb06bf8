"""Client-selection policies. A selector picks invitees from the available candidates.

Protocol (Ray Tune's suggest/complete shape): ``select(ctx, candidates, n, rng) -> ids`` and
``observe(outcomes)``. Per-client policy state lives in numpy columns sized to the population.
Selectors never call Ray or torch.
"""

from simulator.selection.base import RoundContext, RoundFeedback, Selector, make_selector

__all__ = ["RoundContext", "RoundFeedback", "Selector", "make_selector"]
