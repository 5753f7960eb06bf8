"""`fedfleet profiles calibrate SCENARIO --out PROFILE.yaml`: measure this machine as a device.

What is measured (torch imported lazily; the core never imports it):

* **training steps** of the scenario's MLP at its batch size, one thread (as every executor runs),
  for the scenario's widths and wider copies (x2, x4, ... up to ~4M parameters). Each point gives
  seconds per step; FLOPs per step = 6 x parameters x batch (cost.dense_train_flops_per_sample);
* a least-squares fit ``seconds/step = step_overhead_s + FLOPs/step / train_flops_per_s``. Small
  MLPs are overhead-bound (Python, autograd and optimizer bookkeeping per step cost ~0.1-1 ms
  whatever the width), so a single FLOP/s figure measured on one size mispredicts the others by
  up to 20x; the two-term model keeps both within a few percent (benchmarks/bench_calibration.py);
* **peak**: a 1-thread fp32 matmul (1024^3) for ``peak_flops_per_s``; ``train_efficiency`` is
  the fitted training FLOP/s over that peak;
* a CUDA GPU, when torch sees one: the same fit on the GPU, written to ``<out>-cuda.yaml``.

Network, energy and availability are not measured: the profile states assumptions for them.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import platform
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulator import InputError
from simulator.core.cost import dense_train_flops_per_sample, mlp_param_count

log = logging.getLogger(__name__)

MAX_PARAMS = {"cpu": 4_000_000, "cuda": 200_000_000}  # widest model timed per device
WIDTH_FACTORS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class Fit:
    device: str  # "cpu" or "cuda"
    batch: int
    # (layer widths, parameters, seconds per step) per measured model
    points: list[tuple[list[int], int, float]] = field(default_factory=list)
    step_overhead_s: float = 0.0
    train_flops_per_s: float = 0.0
    peak_flops_per_s: float = 0.0

    def predict_step_s(self, n_params: int) -> float:
        flops = dense_train_flops_per_sample(n_params) * self.batch
        return self.step_overhead_s + flops / self.train_flops_per_s


def scenario_sizes(sc: Any) -> list[int]:
    """Layer widths of the scenario's MLP (input features and classes from its dataset)."""
    if sc.model.kind != "mlp":
        raise InputError("model.kind", f"calibration measures MLP scenarios (got "
                         f"'{sc.model.kind}'); use one such as scenarios/quickstart.yaml")
    from simulator.data import build_dataset

    ds = build_dataset(sc, 1)
    return [int(ds.n_features), *sc.model.hidden, int(ds.n_classes)]


def fit_overhead_and_rate(flops_per_step: np.ndarray, s_per_step: np.ndarray,
                          fallback_rate: float | None = None) -> tuple[float, float]:
    """Fit ``s = a + f / rate`` (a >= 0) minimising *relative* errors; returns (a, rate).

    Dividing by s gives ``1 = a / s + (1 / rate) f / s``: ordinary least squares on that keeps
    the small, overhead-bound points as important as the large ones. Without a measurable
    overhead the rate alone is fitted; when time does not grow with FLOPs at all (a GPU at
    small batch: every step is launch overhead) the rate is ``fallback_rate`` (the matmul peak)
    and the overhead what remains of the mean step time.
    """
    f = np.asarray(flops_per_step, np.float64)
    s = np.asarray(s_per_step, np.float64)
    a, b = np.linalg.lstsq(np.c_[1.0 / s, f / s], np.ones_like(s), rcond=None)[0]
    if b <= 0:
        rate = fallback_rate if fallback_rate else float(np.max(f / s))
        return max(0.0, float(np.mean(s - f / rate))), float(rate)
    if a < 0:
        a, b = 0.0, float(np.mean(s / f))
    return float(a), float(1.0 / b)


def with_hidden(sc: Any, hidden: list[int]) -> Any:
    """The scenario with other hidden widths, charging the model itself (no clock proxy)."""
    model = sc.model.model_copy(update={"hidden": tuple(hidden), "clock_proxy": None})
    return sc.model_copy(update={"model": model})


def typical_steps(sc: Any) -> int:
    """Optimizer steps of the scenario's median client (ceil(samples / batch) x epochs)."""
    from simulator.data import build_dataset

    n = float(np.median(build_dataset(sc, min(sc.population.size, 10_000)).n_samples))
    return max(1, math.ceil(n / sc.training.batch_size) * sc.training.epochs)


def _client_runner(sc: Any, sizes: list[int], steps: int) -> Callable[[], None]:
    """One synthetic client task (``steps`` full batches) through the workload's own sequential
    trainer, ``MLPWorkload._train_sequential``: the path a single device follows, so per-client
    costs (loading weights, building the optimizer, reading the result back) are included."""
    from simulator.workloads.mlp import MLPWorkload, batch_plan

    wl = MLPWorkload(with_hidden(sc, sizes[1:-1]), 1)
    batch = sc.training.batch_size
    g = np.random.default_rng(0)
    n = steps * batch
    client = (g.standard_normal((n, sizes[0])).astype(np.float32),
              g.integers(0, sizes[-1], n).astype(np.int64), batch_plan(n, 1, batch, g))
    flat = wl.initial_state()
    return lambda: wl._train_sequential(flat, [client])


def _gpu_runner(sizes: list[int], batch: int, steps: int) -> Callable[[], None]:
    """``steps`` SGD steps of the MLP on the CUDA device, synchronised at the end."""
    import torch
    from torch import nn

    from simulator.workloads.mlp import build_mlp

    with torch.device("cuda"):  # initialise on the GPU: the widest model has ~10^8 parameters
        model = build_mlp(sizes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, sizes[0], device="cuda")
    y = torch.randint(0, sizes[-1], (batch,), device="cuda")

    def run() -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        torch.cuda.synchronize()

    return run


def time_per_step(runners: list[Callable[[], None]], steps: int, budget_s: float,
                  clock: Callable[[], float], repeats: int = 5) -> list[float]:
    """Seconds per step of each runner: the minimum over ``repeats`` rounds, the runners taking
    turns within each round, so a burst of load elsewhere cannot bias one size against another.
    """
    chunk = budget_s / ((repeats + 1) * len(runners))
    for run in runners:  # warm-up: caches, allocator, GPU clocks
        k, t0 = 0, clock()
        while k < 2 or clock() - t0 < chunk:
            run()
            k += 1
    best = [math.inf] * len(runners)
    for _ in range(repeats):
        for i, run in enumerate(runners):
            k, t0 = 0, clock()
            while k < 2 or clock() - t0 < chunk:
                run()
                k += 1
            best[i] = min(best[i], (clock() - t0) / (k * steps))
    return best


def _matmul_peak(device: str, budget_s: float) -> float:
    import torch

    n = 1024 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    clock = time.perf_counter if device == "cuda" else time.thread_time
    a @ b
    sync()
    k, t0 = 0, clock()
    while k < 2 or clock() - t0 < budget_s:
        a @ b
        k += 1
        sync()
    return 2.0 * n**3 * k / (clock() - t0)


def measure(sc: Any, device: str = "cpu", budget_s: float = 6.0) -> Fit:
    """Time training steps at the scenario's widths and wider copies; fit overhead + rate."""
    import torch

    sizes = scenario_sizes(sc)
    batch = sc.training.batch_size
    if device == "cpu":
        torch.set_num_threads(1)  # as in every executor (local and Ray actors)
    fit = Fit(device, batch)
    hidden = sizes[1:-1]
    shapes: list[list[int]] = []
    for m in WIDTH_FACTORS:
        s = [sizes[0], *(max(1, h * m) for h in hidden), sizes[-1]]
        if shapes and mlp_param_count(s) > MAX_PARAMS[device]:
            break
        shapes.append(s)
    if len(shapes) < 3:  # already wide: add narrower copies so the fit has 3 points
        shapes = [[sizes[0], *(max(1, h // d) for h in hidden), sizes[-1]] for d in (4, 2)] + shapes
    if device == "cpu":
        steps = typical_steps(sc)
        runners = [_client_runner(sc, s, steps) for s in shapes]
        # CPU time of this thread (torch runs one intra-op thread): load elsewhere on a shared
        # machine does not count.
        times = time_per_step(runners, steps, 0.8 * budget_s, time.thread_time)
    else:
        steps = 20
        runners = [_gpu_runner(s, batch, steps) for s in shapes]
        times = time_per_step(runners, steps, 0.8 * budget_s, time.perf_counter)
    fit.points = [(s, mlp_param_count(s), t) for s, t in zip(shapes, times, strict=True)]
    flops = np.array([dense_train_flops_per_sample(p) * batch for _, p, _ in fit.points])
    secs = np.array([t for _, _, t in fit.points])
    peak = _matmul_peak(device, 0.2 * budget_s)
    fit.step_overhead_s, fit.train_flops_per_s = fit_overhead_and_rate(flops, secs, peak)
    fit.peak_flops_per_s = max(peak, fit.train_flops_per_s)
    return fit


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return (s or "host")[:40]


def profile_doc(fit: Fit, host: str, when: str, memory_bytes: float,
                extra: str = "") -> dict[str, Any]:
    """A DeviceProfile document (simulator/fleet/profiles.py) for a measured machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    pts = "; ".join(f"{s[1:-1]} {p:,} params {t * 1e3:.3f} ms/step" for s, p, t in fit.points)
    src = f"measured by fedfleet profiles calibrate on {host} {when}"
    name = f"calibrated-{_slug(host)}" + ("-cuda" if fit.device == "cuda" else "")
    eff = min(1.0, fit.train_flops_per_s / fit.peak_flops_per_s)
    return {
        "name": name,
        "label": f"{host} ({extra or cpu}), "
                 + ("CUDA GPU" if fit.device == "cuda" else "1 CPU thread"),
        "kind": "server",
        "compute": {
            "peak_flops_per_s": {"fp32": float(f"{fit.peak_flops_per_s:.4g}")},
            "precision": "fp32",
            "train_efficiency": float(f"{eff:.4g}"),
            "spread_sigma": 0.0,
            "step_overhead_s": float(f"{fit.step_overhead_s:.4g}"),
            "source": (f"{src}: torch {torch.__version__} SGD steps of the scenario's MLP, batch "
                       f"{fit.batch} ({pts}); fit s/step = {fit.step_overhead_s * 1e3:.3f} ms + "
                       f"FLOPs/{fit.train_flops_per_s:.3g}; peak = fp32 matmul"),
        },
        "memory": {"memory_bytes": float(f"{memory_bytes:.4g}"), "usable_fraction": 0.5,
                   "source": f"{src} (total memory); usable share 0.5 is an assumption"},
        "network": {"links": [{
            "link": "ethernet", "share": 1.0, "downlink_bits_per_s_median": 1.0e9,
            "uplink_bits_per_s_median": 1.0e9, "sigma": 0.0, "latency_s": 0.001,
            "source": "not measured: assumption (1 GbE, 1 ms round trip)"}]},
        "energy": {"train_watts": 15.0 if fit.device == "cpu" else 300.0, "transmit_watts": 2.0,
                   "idle_watts": 5.0, "battery_wh": None,
                   "source": "not measured: assumption (one busy core ~15 W; GPU ~300 W)"},
        "availability": {"pattern": "always", "source": "assumption: always on"},
        "dropout": {"hazard_per_hour": 0.0, "source": "assumption: no dropouts"},
    }


def _write(doc: dict[str, Any], path: Path) -> None:
    from simulator.fleet.profiles import DeviceProfile

    DeviceProfile.model_validate(doc)  # never write an invalid profile
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# Written by `fedfleet profiles calibrate` (docs/clock.md).\n"
                    + yaml.safe_dump(doc, sort_keys=False, width=100))


def calibrate(sc: Any, out: str | Path, budget_s: float = 6.0,
              on_written: Callable[[Fit, Path], None] | None = None) -> list[tuple[Fit, Path]]:
    """Measure this machine for scenario ``sc`` and write its profile to ``out`` (a .yaml path),
    plus ``<out>-cuda.yaml`` when torch sees a CUDA GPU. ``on_written(fit, path)`` is called
    after each profile is written (the CLI prints its summary). Returns the (fit, path) pairs."""
    out = Path(out)
    if out.suffix not in (".yaml", ".yml"):
        raise InputError("--out", f"expected a .yaml path, got '{out}'")
    host = socket.gethostname() or "host"
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    try:
        import psutil

        mem = float(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover
        mem = 8e9
    done: list[tuple[Fit, Path]] = []

    def wrote(fit: Fit, path: Path) -> None:
        log.info("%s: step overhead %.3f ms, training %.2f GFLOP/s, peak %.2f GFLOP/s (batch %d); "
                 "wrote %s", fit.device, fit.step_overhead_s * 1e3, fit.train_flops_per_s / 1e9,
                 fit.peak_flops_per_s / 1e9, fit.batch, path)
        done.append((fit, path))
        if on_written is not None:
            on_written(fit, path)

    fit = measure(sc, "cpu", budget_s)
    _write(profile_doc(fit, host, when, mem), out)
    wrote(fit, out)
    import torch

    if torch.cuda.is_available():
        gfit = measure(sc, "cuda", budget_s)
        props = torch.cuda.get_device_properties(0)
        gout = out.with_name(out.stem + "-cuda" + out.suffix)
        _write(profile_doc(gfit, host, when, float(props.total_memory), props.name), gout)
        wrote(gfit, gout)
    return done


__all__ = ["Fit", "calibrate", "fedscale_device_columns", "fit_overhead_and_rate", "measure",
           "profile_doc", "scenario_sizes"]


def fedscale_device_columns(ms_per_sample: np.ndarray, kbit_per_s: np.ndarray,
                            train_flops_per_sample: float) -> tuple[np.ndarray, np.ndarray]:
    """FedScale trace units -> this simulator's columns (train FLOP/s, link bit/s).

    FedScale charges ``3 * ms_per_sample / 1000`` s per trained sample (3x its inference
    latency) and ``(upload + download) / bandwidth`` for the transfers. A device that trains a
    sample of ``train_flops_per_sample`` FLOPs in that time has that many FLOP/s; kbit/s x 1000
    = bit/s, for the downlink and the uplink alike. With zero latency, ``cost.estimate`` then
    reproduces ``cost.fedscale_completion_s`` (tests/test_calibrate.py).
    """
    ms = np.asarray(ms_per_sample, np.float64)
    return train_flops_per_sample / (3.0 * ms / 1000.0), np.asarray(kbit_per_s, np.float64) * 1000.0
