"""Scenario blocks ``privacy:`` and ``secure_aggregation:`` (pydantic only; loaded by scenario.py).

See docs/privacy-hierarchy.md for the formulas and sources behind each field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Privacy(_Block):
    """Differential privacy: DP-FedAvg (McMahan et al., ICLR 2018).

    ``central``: each client's update is clipped to L2 norm ``clip_norm`` (C); the server sums the
    clipped updates with equal weights, adds N(0, (z C)^2) and divides by the fixed
    ``clients_per_round``. ``local``: each client adds N(0, (z C)^2) to its own clipped update.
    """

    mode: Literal["none", "central", "local"] = "none"
    clip_norm: float = Field(1.0, gt=0, le=1e12, description="C: L2 bound on a client update")
    noise_multiplier: float = Field(1.0, ge=0, le=1e4, description="z: noise std = z * C")
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the reported (epsilon, delta)")
    accountant: Literal["rdp"] = "rdp"
    sampling_rate: float | None = Field(
        None, gt=0, le=1,
        description=("q for central DP's accounting, every round (default: each round's actual "
                     "rate, invited / online; docs/privacy-hierarchy.md)"))


class SecureAggregation(_Block):
    """Pairwise-masking secure aggregation (Bonawitz et al., CCS 2017): cost model and dropout
    threshold. A round whose surviving clients fall below ceil(threshold_fraction * n) fails."""

    enabled: bool = False
    threshold_fraction: float = Field(
        2.0 / 3.0, gt=0, le=1,
        description="t / n: the paper's active-adversary setting needs t > 2n/3")
    input_bits: int = Field(32, ge=1, le=64, description="bits per quantized update element")
    key_bytes: float = Field(33.0, ge=0, le=1e6, description="one public key (P-256, compressed)")
    share_bytes: float = Field(32.0, ge=0, le=1e6, description="one Shamir share of a secret")
    id_bytes: float = Field(4.0, ge=0, le=64, description="a client index in a message")
    aead_overhead_bytes: float = Field(28.0, ge=0, le=1e6, description="AES-GCM nonce + tag")
    prg_bytes_per_s: float = Field(
        1.0e9, gt=0, le=1e13, description="client AES-CTR mask expansion throughput")
    server_prg_bytes_per_s: float = Field(
        4.0e9, gt=0, le=1e14, description="server mask expansion throughput")
    key_agreement_s: float = Field(2e-4, ge=0, le=10, description="one ECDH agreement")


def privacy_problems(sc: Any, known_profiles: Any) -> list[str]:
    """Cross-field checks for the blocks this feature set adds (privacy, secure aggregation,
    population.require_link; hierarchy's own checks live in simulator/config/hierarchy.py).
    Which trigger supports them is declared by the trigger (config/scenario.py part_problems)."""
    lines: list[str] = []
    lines += central_dp_problems(sc)
    need = set(sc.population.require_link)
    if need:
        links = {lk.link for m in sc.population.mix if m.profile in known_profiles
                 for lk in known_profiles[m.profile].network.links}
        if not need & links:
            lines.append(f"population.require_link: no profile in population.mix has a link in "
                         f"{sorted(need)} (their links: {', '.join(sorted(links))})")
    return lines


def central_dp_problems(sc: Any) -> list[str]:
    """Central DP's accountant amplifies by uniform sampling (simulator/privacy/accountant.py):
    a selector that picks by utility, speed, loss or quota does not sample uniformly, so its
    rounds would be charged too little. Refused unless the policy declares ``samples:uniform``."""
    if sc.privacy.mode != "central":
        return []
    from simulator.core.registry import POLICIES

    policy = sc.selection.policy
    if policy not in POLICIES:
        return []  # reported by registry_problems
    if "samples:uniform" in POLICIES.entry(policy).declares:
        return []
    return [f"privacy.mode: central DP is accounted for uniform sampling, but selection.policy "
            f"'{policy}' does not sample uniformly; use selection.policy 'random' or "
            f"privacy.mode 'local'"]
