"""The scenario's ``hierarchy:`` block (clients -> edges -> cloud; HierFAVG) and its checks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientEdgeLink(_Block):
    """Client <-> edge link when it differs from the client's own profile link (e.g. a home LAN
    between IoT devices and their hub)."""

    downlink_bits_per_s: float = Field(gt=0, le=1e12)
    uplink_bits_per_s: float = Field(gt=0, le=1e12)
    latency_s: float = Field(0.005, ge=0, le=10)


class Hierarchy(_Block):
    """Clients -> edge aggregators -> cloud (HierFAVG); ``rounds`` counts edge rounds."""

    edges: int = Field(ge=1, le=1_000_000, description="number of edge aggregators")
    edge_profile: str = Field(min_length=1, description="device profile of every edge aggregator")
    edge_rounds_per_cloud_round: int = Field(1, ge=1, le=100_000, description="kappa_2")
    assignment: Literal["modulo", "block"] = Field(
        "modulo", description="client -> edge: client_id % edges, or contiguous id blocks")
    client_link: ClientEdgeLink | None = None
    model_bytes: float | None = Field(
        None, gt=0, le=1e13, description="edge model size on the backhaul (default: planner's)")


def hierarchy_problems(sc: Any, known_profiles: Any) -> list[str]:
    h = getattr(sc, "hierarchy", None)
    if h is None:
        return []
    lines = []
    if h.edge_profile not in known_profiles:
        lines.append(f"hierarchy.edge_profile: unknown profile '{h.edge_profile}' "
                     f"(known: {', '.join(sorted(known_profiles))})")
    if h.edges > sc.population.size:
        lines.append(f"hierarchy.edges: {h.edges} edges for {sc.population.size} clients "
                     "(at most one edge per client)")
    return lines
