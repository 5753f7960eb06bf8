"""SCAFFOLD (Karimireddy et al., ICML 2020, "Stochastic controlled averaging for federated
learning"), option II, with server control variate c and one control variate c_i per client.

Client i, starting from the global model x with K_i local steps of learning rate eta_l, corrects
every gradient by the drift between the server's and its own variate:

    y <- y - eta_l (g_i(y) + c - c_i)
    c_i+ = c_i - c + (x - y) / (K_i eta_l)                 (option II)

and the server, over the clients S that reached it (N: population size), does

    x <- x + eta_g * mean_{i in S}(y_i - x)               (the scenario's default averaging)
    c <- c + (1 / N) sum_{i in S} (c_i+ - c_i)

``eta_g`` is ``aggregation.server_lr``; the mean is the trigger's own (sample-weighted FedAvg;
FedBuff's staleness weights with ``method: fedbuff``). Every c_i starts at 0.

Where the state lives: the client variates are client state, kept in the simulation (the driver,
beside the fleet's other per-client state), so they survive executor restarts and are saved in
every checkpoint (``strategy__variate_ids`` / ``strategy__variates``, and the server variates of
the model versions still in flight). Each job carries its offset c - c_i (assignment column
``scaffold_offset``, float32 [k, P]); the workload applies it at every local step and returns
c_i+ (``Partial.client_state``, float64 [k, P]). Memory: the driver holds 8 P bytes for every
client that has trained once (at most ``population.size`` x 8 P bytes; refused above
``CLIENT_STATE_BYTES_MAX``), and each round ships 12 P bytes per job.

On the buffered trigger a client trained from version v uses the server variate of version v
(kept for ``max_staleness`` versions, as the models are)."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.fedavg import step_model
from simulator.aggregation.strategies.base import base_step
from simulator.aggregation.strategy import StatelessStrategy
from simulator.errors import InputError

OFFSET = "scaffold_offset"  # assignment column: c - c_i per job
CLIENT_STATE_BYTES_MAX = 8e9  # client variates the driver may hold (population x 8 P bytes)


class ControlVariates:
    """SCAFFOLD's client side: gradient + (c - c_i); then c_i+ (option II)."""

    column = OFFSET

    def __init__(self, lr: float) -> None:
        self.lr = float(lr)

    def correction(self, param: Any, global_param: Any, offset: Any = None) -> Any:
        return offset

    def client_state(self, delta: np.ndarray, offset: np.ndarray, steps: int) -> np.ndarray:
        """c_i+ = c_i - c + (x - y) / (K eta_l) = -offset - delta / (K eta_l)."""
        return -np.asarray(offset, np.float64) - delta / (max(int(steps), 1) * self.lr)


class Scaffold(StatelessStrategy):
    """SCAFFOLD (Karimireddy et al. 2020): server and client control variates."""

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        super().__init__(scenario, params)
        self.c_by_version: dict[int, np.ndarray] = {}  # server variate per model version
        self.variates: dict[int, np.ndarray] = {}  # c_i of every client that has trained
        fb = getattr(getattr(scenario, "aggregation", None), "fedbuff", None)
        self.keep_versions = int(getattr(fb, "max_staleness", 0) or 0) + 1
        pop = getattr(scenario, "population", None)
        self.population = int(getattr(pop, "size", 1) or 1)

    # --- client side ----------------------------------------------------------------------------
    def client_training(self) -> ControlVariates:
        return ControlVariates(float(self.scenario.training.lr))

    def check_model(self, n_params: int) -> None:
        need = 8.0 * n_params * self.population
        if need > CLIENT_STATE_BYTES_MAX:
            raise InputError("aggregation.strategy", f"'scaffold' keeps a control variate per "
                             f"client: {self.population:,} clients x {n_params:,} parameters "
                             f"need up to {need / 1e9:.1f} GB in the driver (limit "
                             f"{CLIENT_STATE_BYTES_MAX / 1e9:.0f} GB)")

    def server_variate(self, version: int, n_params: int) -> np.ndarray:
        """c at model version ``version`` (the newest kept at or before it; 0 at the start)."""
        older = [v for v in self.c_by_version if v <= version]
        return self.c_by_version[max(older)] if older else np.zeros(n_params)

    def job_columns(self, ids: np.ndarray, version: int, n_params: int) -> dict[str, np.ndarray]:
        c = self.server_variate(version, n_params)
        zero = np.zeros(n_params)
        off = np.stack([c - self.variates.get(int(i), zero) for i in ids]) if len(ids) \
            else np.zeros((0, n_params))
        return {OFFSET: off.astype(np.float32)}

    # --- server side ----------------------------------------------------------------------------
    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        step = base_step(self.scenario, sums, ctx)
        n = int(global_flat.size)
        c = self.server_variate(ctx.round, n).copy()
        for con in sums.contributions:
            p = con.partial
            if not len(p.client_ids):
                continue
            if p.client_state is None:
                raise InputError("aggregation.strategy", "'scaffold' needs the clients' new "
                                 "control variates, which this workload does not return")
            for cid, row in zip(p.client_ids, p.client_state, strict=True):
                old = self.variates.get(int(cid))
                c += (row - (0.0 if old is None else old)) / self.population
                self.variates[int(cid)] = np.array(row, np.float64)
        self.c_by_version[ctx.round + 1] = c
        for v in [v for v in self.c_by_version if v <= ctx.round + 1 - self.keep_versions]:
            del self.c_by_version[v]
        return step_model(global_flat, step, ctx.server_lr)

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if not self.c_by_version and not self.variates:
            return {}
        ids = np.array(sorted(self.variates), np.int64)
        vers = np.array(sorted(self.c_by_version), np.int64)
        return {"variate_ids": ids,
                "variates": np.stack([self.variates[int(i)] for i in ids]) if len(ids)
                else np.zeros((0, 0)),
                "c_versions": vers,
                "c": np.stack([self.c_by_version[int(v)] for v in vers]) if len(vers)
                else np.zeros((0, 0))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        ids, rows = state.get("variate_ids"), state.get("variates")
        self.variates = {} if ids is None else {
            int(i): np.asarray(r, np.float64).copy()
            for i, r in zip(np.asarray(ids), np.asarray(rows), strict=True)}
        vers, cs = state.get("c_versions"), state.get("c")
        self.c_by_version = {} if vers is None else {
            int(v): np.asarray(r, np.float64).copy()
            for v, r in zip(np.asarray(vers), np.asarray(cs), strict=True)}
