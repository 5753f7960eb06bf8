"""``executor.kind: auto``: in-process when Ray cannot pay off, Ray when it can (no torch/ray here).

Ray runs clients in parallel on ``n`` actors but costs a fixed start (``ray.init``, then every
actor process importing torch and building its workload): ~5 s on a quiet 2-core machine and
30-70 s on a loaded one (docs/performance.md). It saves at most ``(1 - 1/n)`` of the training
time, so it pays off only when the run trains for longer than ``STARTUP_S / (1 - 1/n)``.

The training time is estimated before anything is built, from the scenario alone:

    clients trained = rounds x ceil(clients_per_round x overcommit)
    samples         = clients trained x data.samples_per_client x training.epochs
    FLOPs           = samples x 6 x parameters   (x seq_len tokens for a transformer)
    seconds         = FLOPs / (RATE_FLOPS x efficiency)

with the parameters of the MLP from ``model.hidden`` (64 input features and 10 classes assumed:
the dataset is not built yet) or the transformer's closed-form spec. ``efficiency`` is the
fraction of the core's rate these small models reach in PyTorch (measured: ~0.05 for the
batched MLP, ~0.3 for a transformer). An estimate only needs to be right within the factor the
threshold leaves: the quickstart is ~0.2 s of training against a 20 s threshold.

Ray is also chosen whenever ``executor.address`` (or ``RAY_ADDRESS``) names a cluster, or
custom per-actor ``resources`` are asked for; in-process when this machine offers one core.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

STARTUP_S = 20.0  # Ray start + actors importing torch, on a shared 2-core machine
RATE_FLOPS = 2e10  # one modern x86 core, fp32, with AVX2/AVX-512 FMA
EFFICIENCY = {"mlp": 0.05, "transformer": 0.3}
DEFAULT_EFFICIENCY = 0.1  # a plugin model kind


@dataclass(frozen=True)
class Choice:
    kind: str  # "local" or "ray"
    reason: str
    requested: str  # what the scenario said ("auto", "local", "ray")
    estimated_train_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "requested": self.requested, "reason": self.reason,
                "estimated_train_s": self.estimated_train_s}


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def model_params(sc: Any) -> tuple[float, float]:
    """(parameters, tokens per sample) of the scenario's model, estimated without torch."""
    m = sc.model
    if m.kind == "transformer":
        try:
            from simulator.config.llm import closed_form_spec

            return float(closed_form_spec(m).total_params), float(m.seq_len)
        except Exception:  # an invalid model is refused elsewhere; assume a large one
            return 1e9, float(m.seq_len)
    sizes = [64, *m.hidden, 10]
    return float(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))), 1.0


def estimated_train_s(sc: Any) -> float:
    """Single-core seconds of local training the whole run needs (see the module docstring)."""
    clients = sc.rounds * math.ceil(sc.clients_per_round * sc.overcommit)
    samples = clients * sc.data.samples_per_client * sc.training.epochs
    params, tokens = model_params(sc)
    eff = EFFICIENCY.get(sc.model.kind, DEFAULT_EFFICIENCY)
    return samples * tokens * 6.0 * params / (RATE_FLOPS * eff)


def choose(sc: Any) -> Choice:
    ex = sc.executor
    kind = str(ex.kind)
    if kind != "auto":
        return Choice(kind, "executor.kind set in the scenario", kind)
    if sc.mode != "real":
        return Choice("local", "analytic mode trains nothing", kind)
    addr = ex.address or os.environ.get("RAY_ADDRESS")
    if addr:
        return Choice("ray", f"executor.address names a cluster ({addr})", kind)
    if ex.resources:
        return Choice("ray", "executor.resources asks for custom Ray resources", kind)
    cores = usable_cores()
    est = estimated_train_s(sc)
    if cores < 2:
        return Choice("local", "this machine offers one core: Ray cannot train in parallel",
                      kind, est)
    n = ex.num_actors or max(1, int(cores // ex.num_cpus_per_actor))
    n = min(n, cores)
    saving = est * (1.0 - 1.0 / max(n, 1))
    if saving > STARTUP_S:
        return Choice("ray", f"~{est:.0f} s of training; {n} actors save ~{saving:.0f} s, more "
                      f"than Ray's ~{STARTUP_S:.0f} s start", kind, est)
    return Choice("local", f"~{est:.1f} s of training; {n} actors would save at most "
                  f"~{saving:.1f} s, less than Ray's ~{STARTUP_S:.0f} s start", kind, est)
