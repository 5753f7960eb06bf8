"""Ray executor: a pool of actors, each hosting a shard of the population and a resident model.

Client c belongs to actor ``c % n_actors``. Each round the global weights go into the object
store once (``ray.put``) and every actor gets one call carrying its batch of jobs; it returns one
partial sum. A dead actor is restarted and its jobs re-run (up to ``executor.max_retries``);
fixed-point aggregation makes the result independent of where and how often a job ran.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import numpy as np

from simulator import FedFleetError
from simulator.aggregation import Partial
from simulator.core.jobs import JobBatch

# Start-up progress for people watching (the CLI shows these lines; simulator/cli/progress.py).
status = logging.getLogger("simulator.status")


def _host_class():  # type: ignore[no-untyped-def]
    import ray

    @ray.remote
    class ClientHost:
        def __init__(self, scenario: Any, population_size: int, threads: int) -> None:
            import torch

            torch.set_num_threads(max(1, threads))
            from simulator.workloads import build_workload

            self.workload = build_workload(scenario, population_size)

        def n_params(self) -> int:
            return int(self.workload.n_params)

        def initial_state(self) -> np.ndarray:
            return self.workload.initial_state()

        def train(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
            return self.workload.train(global_flat, jobs)

        def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
            return self.workload.evaluate(flat)

        def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                             steps: int) -> np.ndarray:
            return self.workload.evaluate_clients(flat, client_ids, seeds, steps)

        def pid(self) -> int:
            return os.getpid()

        def placement(self) -> dict[str, Any]:
            """Where this host runs: node, process, torch device, granted GPUs."""
            return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(),
                    "device": str(getattr(self.workload, "device", "cpu")),
                    "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}

    return ClientHost


def check_resources(total: dict[str, float], n_actors: int, ex: Any) -> None:
    """GPUs and custom resources the actors ask for must exist, or Ray would wait forever."""
    wants = {"GPU": float(ex.num_gpus_per_actor), **{k: float(v) for k, v in ex.resources.items()}}
    for name, per in wants.items():
        need, have = n_actors * per, float(total.get(name, 0.0))
        if per > 0 and need > have + 1e-9:
            gpu = name == "GPU"
            field = "num_gpus_per_actor" if gpu else f"resources.{name}"
            how = "--num-gpus=1" if gpu else f"--resources='{{\"{name}\": 1}}'"
            raise FedFleetError(
                f"executor.{field}: {n_actors} actors x {per:g} {name} need {need:g} but the Ray "
                f"cluster has {have:g} (add nodes with it, e.g. `ray start {how}`, or lower "
                "executor.num_actors)")


def startup_error_line(text: str) -> str:
    """The user-facing line inside a Ray error raised while an actor built its workload."""
    for marker in ("InputError: ", "FedFleetError: ", "ScenarioError: "):
        if marker in text:
            return text.rsplit(marker, 1)[1].strip().splitlines()[0]
    last = [ln for ln in text.strip().splitlines() if ln.strip()]
    reason = last[-1].strip() if last else "no reason given"
    return f"executor: a Ray actor failed to start ({reason})"


AUTH_HELP = ("if the cluster uses token authentication (Ray 2.59+ turns it on for `ray start "
             "--head`), set RAY_AUTH_MODE=token and give the cluster's token in RAY_AUTH_TOKEN, "
             "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token (`ray get-auth-token` on the head node "
             "prints it); see docs/cluster.md")


def token_source() -> str | None:
    """Where a Ray token would come from on this machine (Ray's own precedence), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return default if os.path.isfile(default) else None


def join_ray(ray: Any, addr: str, **kwargs: Any) -> None:
    """``ray.init(address=addr)``; a failure is one line that says what to set.

    A cluster started with ``ray start --head`` by Ray 2.59+ requires a token, but a driver
    joining it sends one only with ``RAY_AUTH_MODE=token``; without it Ray logs
    ``InvalidAuthToken`` and raises a bare connection error. Ray reads the mode once per
    process, so it cannot be switched on for a retry; and a driver in token mode cannot start
    actors on a cluster without authentication, so it cannot be switched on by guessing either.
    The error therefore names the fix, and points at this machine's token when there is one."""
    try:
        ray.init(address=addr, **kwargs)
    except Exception as exc:
        refused = _is_auth_failure(exc)
        if not refused and not isinstance(exc, (ConnectionError, RuntimeError, ValueError)):
            raise
        mode, src = os.environ.get("RAY_AUTH_MODE"), token_source()
        if mode != "token" and src is not None:
            hint = (f"the cluster probably requires token authentication and this driver sent "
                    f"no token: rerun with RAY_AUTH_MODE=token (the token is then read from "
                    f"{src}); see docs/cluster.md")
        elif mode == "token":
            hint = (f"RAY_AUTH_MODE=token is set: check that the token "
                    f"({src or 'none found'}) is the cluster's (`ray get-auth-token` on the head "
                    "node prints it); see docs/cluster.md")
        else:
            hint = AUTH_HELP
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        what = "refused this driver's authentication token" if refused else "cannot be joined"
        raise FedFleetError(f"executor.address: the Ray cluster at {addr} {what} ({first}); "
                            f"{hint}") from None


def init_ray(address: str | None, num_cpus: int | None = None) -> None:
    """Join ``address`` (or RAY_ADDRESS) if given, else start a local instance."""
    import ray

    if ray.is_initialized():
        return
    addr = address or os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "configure_logging": False}
    if addr:
        status.info("joining Ray at %s...", addr)
        join_ray(ray, addr, **kwargs)
        return
    # "local": always a private instance, never another Ray that runs on this machine
    cpus = num_cpus or os.cpu_count() or 1
    status.info("starting Ray (%d CPUs)...", cpus)
    try:
        ray.init(address="local", num_cpus=cpus, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FedFleetError(f"executor.address: cannot start Ray ({exc})") from None


_AUTH_NEEDLES = ("invalidauthtoken", "unauthenticated", "authentication token",
                 "token authentication")


def _is_auth_failure(exc: BaseException) -> bool:
    """Ray's token authentication refused us (ray.exceptions.AuthenticationError, or a
    connection error whose text says so, as gRPC's UNAUTHENTICATED / InvalidAuthToken)."""
    import ray.exceptions

    auth_error = getattr(ray.exceptions, "AuthenticationError", None)  # Ray >= 2.52
    if auth_error is not None and isinstance(exc, auth_error):
        return True
    text = (getattr(exc, "message", None) or str(exc)).lower()
    return any(n in text for n in _AUTH_NEEDLES)


class RayExecutor:
    def __init__(self, scenario: Any, population_size: int) -> None:
        import ray

        ex = scenario.executor
        init_ray(ex.address)
        self.ray = ray
        self.scenario = scenario
        self.population_size = population_size
        cpus = float(ray.cluster_resources().get("CPU", 1))
        self.n_actors = ex.num_actors or max(1, int(cpus // ex.num_cpus_per_actor))
        need = self.n_actors * ex.num_cpus_per_actor
        if need > cpus + 1e-9:
            raise FedFleetError(
                f"executor.num_actors: {self.n_actors} actors x {ex.num_cpus_per_actor:g} CPU need "
                f"{need:g} CPUs but the Ray cluster has {cpus:g} (lower executor.num_actors or "
                "executor.num_cpus_per_actor; fractions such as 0.5 are allowed)"
            )
        check_resources(ray.cluster_resources(), self.n_actors, ex)
        self.max_retries = ex.max_retries
        self.retries_used = 0
        self._options: dict[str, Any] = {"num_cpus": ex.num_cpus_per_actor,
                                         "num_gpus": ex.num_gpus_per_actor,
                                         "max_restarts": 0}
        if ex.resources:
            self._options["resources"] = dict(ex.resources)
        if getattr(ex, "scheduling", "default") == "spread":  # one actor per node where possible
            self._options["scheduling_strategy"] = "SPREAD"
        self._threads = max(1, int(ex.num_cpus_per_actor))
        self._cls = _host_class()
        status.info("starting %d actor%s, importing torch...", self.n_actors,
                    "" if self.n_actors == 1 else "s")
        self._t_spawn = time.perf_counter()
        self.actors = [self._spawn() for _ in range(self.n_actors)]
        # Fetched on first use: the driver samples its population while the actors start.
        self._n_params_ref = self.actors[0].n_params.remote()
        self._init_ref = self.actors[0].initial_state.remote()
        self._n_params: int | None = None
        self._init: np.ndarray | None = None

    def _get_startup(self, ref):  # type: ignore[no-untyped-def]
        """ray.get for start-up calls: an actor that failed to build becomes a one-line error."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            raise FedFleetError(startup_error_line(str(exc))) from None

    @property
    def n_params(self) -> int:
        if self._n_params is None:
            self._n_params = int(self._get_startup(self._n_params_ref))
        return self._n_params

    def _spawn(self):  # type: ignore[no-untyped-def]
        return self._cls.options(**self._options).remote(
            self.scenario, self.population_size, self._threads)

    def initial_state(self) -> np.ndarray:
        if self._init is None:
            self._init = self._get_startup(self._init_ref)
            status.info("%d actor%s ready (%.1f s)", self.n_actors,
                        "" if self.n_actors == 1 else "s", time.perf_counter() - self._t_spawn)
        return np.array(self._init, copy=True)

    def shard(self, jobs: JobBatch) -> list[JobBatch]:
        owner = jobs.client_ids % self.n_actors
        return [jobs.subset(owner == a) for a in range(self.n_actors)]

    def run(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        ray = self.ray
        ref = ray.put(global_flat)
        shards = self.shard(jobs)
        pending = {a: self.actors[a].train.remote(ref, s) for a, s in enumerate(shards) if len(s)}
        total = Partial.empty(self.n_params)
        while pending:
            a, fut = next(iter(pending.items()))
            try:
                part = ray.get(fut)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError,
                    ray.exceptions.ActorUnavailableError) as exc:
                if self.retries_used >= self.max_retries:
                    raise FedFleetError(
                        f"executor: actor {a} failed and executor.max_retries "
                        f"({self.max_retries}) is exhausted ({type(exc).__name__})"
                    ) from None
                self.retries_used += 1
                self.actors[a] = self._spawn()
                pending[a] = self.actors[a].train.remote(ref, shards[a])
                continue
            total = total.merge(part)
            del pending[a]
        return total

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
        for _attempt in range(self.max_retries + 1):
            try:
                loss, acc = self.ray.get(self.actors[0].evaluate.remote(flat))
                return float(loss), float(acc)
            except self.ray.exceptions.RayActorError:
                self.actors[0] = self._spawn()
        raise FedFleetError("executor: evaluation actor keeps failing")

    def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                         steps: int) -> np.ndarray:
        """Each client evaluates on the actor that hosts it (client c on actor c % n); only the
        ``[n, 4]`` scalars come back, in the order of ``client_ids``."""
        ray = self.ray
        ids = np.asarray(client_ids, np.int64)
        seeds = np.asarray(seeds)
        ref = ray.put(flat)
        owner = ids % self.n_actors
        parts = {a: np.flatnonzero(owner == a) for a in range(self.n_actors)}
        parts = {a: ix for a, ix in parts.items() if ix.size}
        out = np.full((len(ids), 4), np.nan)

        def call(a: int) -> Any:
            ix = parts[a]
            return self.actors[a].evaluate_clients.remote(ref, ids[ix], seeds[ix], int(steps))

        pending = {a: call(a) for a in parts}
        while pending:
            a, fut = next(iter(pending.items()))
            try:
                out[parts[a]] = ray.get(fut)
            except (ray.exceptions.RayActorError, ray.exceptions.ActorDiedError,
                    ray.exceptions.ActorUnavailableError) as exc:
                if self.retries_used >= self.max_retries:
                    raise FedFleetError(
                        f"executor: actor {a} failed in client evaluation and executor."
                        f"max_retries ({self.max_retries}) is exhausted ({type(exc).__name__})"
                    ) from None
                self.retries_used += 1
                self.actors[a] = self._spawn()
                pending[a] = call(a)
                continue
            del pending[a]
        return out

    def close(self) -> None:
        for a in self.actors:
            with contextlib.suppress(Exception):  # best effort at shutdown
                self.ray.kill(a)
        self.actors = []
