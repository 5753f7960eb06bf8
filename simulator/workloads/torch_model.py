"""Any ``nn.Module`` as a federated workload: the user's own model (``model.kind: custom``,
``model.factory: "package.module:function"``) and the built-in vision models (``cnn``,
``resnet18``, ``mobilenet_v2``: simulator/workloads/vision.py).

**Measured, not assumed.** :func:`measure` runs one forward and backward pass of a sample batch
under ``torch.utils.flop_counter.FlopCounterMode`` (training FLOPs per sample), counts the
parameters and floating-point buffers (what is sent down and up: the aggregated state), and sums
the bytes autograd saves for backward (activation memory per sample, through
``torch.autograd.graph.saved_tensors_hooks``). The planner
(:class:`~simulator.planning.measured.MeasuredPlanner`) charges the clock with these numbers, as
it charges an MLP with its closed-form ones; ``model.clock_proxy`` overrides them.

**State.** The global state is every floating-point entry of the module's ``state_dict`` in order:
parameters and float buffers (batch-norm running statistics, averaged like the weights, as
FedAvg over BN models usually does). Integer buffers (``num_batches_tracked``) stay local.

**Training.** Each client loads the global state, runs ``training.epochs`` over its shard in the
mini-batches of :func:`simulator.workloads.mlp.batch_plan` (the same index plan as the MLP, so the
planner's step count is exact) with the scenario's optimizer, adds the strategy's
``ClientTraining.correction(param, global_param)`` to every trainable parameter's gradient at
every step (FedProx's proximal term ...), and returns its final state. A batch of a single sample
is skipped when the model has batch norm (training-mode batch norm cannot normalise one sample).
Updates are summed in fixed point, weighted by samples (:func:`~simulator.workloads.mlp.
group_partial`), so the aggregate does not depend on how clients are spread over hosts.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from simulator import InputError
from simulator.aggregation import Partial
from simulator.core import rng as rngmod
from simulator.core.jobs import JobBatch
from simulator.data import build_dataset
from simulator.privacy import make_update_hook
from simulator.workloads.mlp import batch_plan, client_training_for, group_partial, pick_device

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
MEASURE_BATCH = 4  # samples in the measured forward/backward pass
EVAL_BATCH = 256


@dataclass(frozen=True)
class Measure:
    """What the clock charges for one model (``measure``)."""

    n_params: int  # trainable parameters
    state_floats: int  # floats sent each way: parameters + float buffers
    state_bytes: float  # fp32 bytes of that state
    train_flops_per_sample: float  # forward + backward, FlopCounterMode
    activation_bytes_per_sample: float  # bytes autograd saves for backward


def input_shape_of(dataset: Any) -> tuple[int, ...]:
    """The shape one sample is reshaped to: the dataset's ``input_shape`` or ``(n_features,)``."""
    shape = getattr(dataset, "input_shape", None)
    return tuple(int(v) for v in shape) if shape else (int(dataset.n_features),)


def load_factory(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (``InputError`` naming model.factory)."""
    mod, sep, attr = path.partition(":")
    if not sep or not mod or not attr:
        raise InputError("model.factory", f"expected 'package.module:function' (got {path!r})")
    try:
        obj: Any = importlib.import_module(mod)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except ImportError as exc:
        raise InputError("model.factory", f"cannot import '{mod}' ({exc})") from None
    except AttributeError:
        raise InputError("model.factory", f"'{mod}' has no '{attr}'") from None
    if not callable(obj):
        raise InputError("model.factory", f"'{path}' is not callable")
    fn: Callable[..., Any] = obj
    return fn


def call_factory(fn: Callable[..., Any], input_shape: tuple[int, ...], n_classes: int,
                 kwargs: dict[str, Any], where: str = "model.factory") -> tuple[nn.Module,
                                                                             LossFn | None]:
    """Build ``(module, loss or None)``: ``input_shape`` and ``n_classes`` are passed when the
    factory takes them (by name, or through ``**kwargs``), then ``kwargs``."""
    names: set[str] = set()
    try:
        params = inspect.signature(fn).parameters
        names = set(params)
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    except (TypeError, ValueError):
        var_kw = True
    args = {k: v for k, v in (("input_shape", input_shape), ("n_classes", n_classes))
            if var_kw or k in names}
    try:
        out = fn(**args, **kwargs)
    except InputError:
        raise
    except Exception as exc:
        why = (str(exc).splitlines() or [""])[0][:200]
        raise InputError(where, f"building the model failed ({type(exc).__name__}: {why})"
                         ) from None
    loss = None
    if isinstance(out, tuple) and len(out) == 2:
        out, loss = out
    if not isinstance(out, nn.Module):
        raise InputError(where, f"the factory must return an nn.Module or (nn.Module, loss); "
                                f"got {type(out).__name__}")
    if loss is not None and not callable(loss):
        raise InputError(where, "the loss the factory returns must be callable(logits, y)")
    return out, loss


def _per_sample(loss: LossFn | None, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample losses (cross-entropy by default); a user loss that returns a scalar is the
    batch mean, spread evenly."""
    if loss is None:
        return nn.functional.cross_entropy(logits, y, reduction="none")
    out = loss(logits, y)
    if out.dim() == 0:
        return out.expand(len(y))
    return out.reshape(-1)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def measure(model: nn.Module, input_shape: tuple[int, ...], n_classes: int,
            loss: LossFn | None = None, batch: int = MEASURE_BATCH) -> Measure:
    """Parameters, state bytes, training FLOPs and saved activation bytes per sample, from one
    forward and backward pass of ``batch`` random samples on a copy of ``model``."""
    from torch.utils.flop_counter import FlopCounterMode

    m = copy.deepcopy(model).train()
    n_params = sum(p.numel() for p in m.parameters() if p.requires_grad)
    floats = sum(t.numel() for t in m.state_dict().values() if t.is_floating_point())
    g = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *input_shape), generator=g)
    y = torch.randint(0, max(1, n_classes), (batch,), generator=g)
    param_ptrs = {p.data_ptr() for p in m.parameters()}
    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in param_ptrs:
            saved[0] += t.numel() * t.element_size()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _per_sample(loss, m(x), y).mean().backward()
    return Measure(int(n_params), int(floats), 4.0 * floats,
                   float(counter.get_total_flops()) / batch, float(saved[0]) / batch)


class TorchModelWorkload:
    """Trains an ``nn.Module`` built by ``build(input_shape, n_classes) -> (module, loss)``."""

    def __init__(self, scenario: Any, population_size: int,
                 build: Callable[[tuple[int, ...], int], tuple[nn.Module, LossFn | None]]
                 ) -> None:
        self.scenario = scenario
        self.dataset = build_dataset(scenario, population_size)
        self.input_shape = input_shape_of(self.dataset)
        t = scenario.training
        self.epochs, self.batch, self.lr = t.epochs, t.batch_size, t.lr
        self.optimizer, self.momentum = t.optimizer, t.momentum
        self.device = pick_device(scenario)
        self.update_hook = make_update_hook(scenario)
        self.client_training = client_training_for(scenario)
        from simulator.aggregation.strategy import needs_client_updates

        # robust rules read every individual update (strategy declares needs:client_updates)
        self.keep_updates = needs_client_updates(scenario)
        torch.manual_seed(rngmod.int_seed(scenario.seed, rngmod.INIT))
        self.model, self.loss = build(self.input_shape, int(self.dataset.n_classes))
        self.model.to(self.device)
        self.bn = has_batch_norm(self.model)
        sd = self.model.state_dict()
        self.keys = [k for k, v in sd.items() if v.is_floating_point()]
        self.shapes = [tuple(sd[k].shape) for k in self.keys]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.n_params = int(sum(self.sizes))
        self._params = dict(self.model.named_parameters())
        self._init = self._flat()
        # batched clients through torch.func (torch_batched.py): opt-in, executor.batched_vision
        self.batched = bool(getattr(scenario.executor, "batched_vision", False))
        self._batched: Any = None
        self.why_not_batched: str | None = None
        if self.batched:
            from simulator.workloads.torch_batched import BatchedTrainer, why_not_batched

            self.why_not_batched = why_not_batched(self.model, self.loss, self.optimizer)
            if self.why_not_batched is None:
                self._batched = BatchedTrainer(
                    self.model, self.keys, self.shapes, self.input_shape, self.epochs,
                    self.batch, self.lr, self.momentum, self.client_training, self.device)

    # --- state ----------------------------------------------------------------------------------
    def _flat(self) -> np.ndarray:
        sd = self.model.state_dict()
        return torch.cat([sd[k].detach().reshape(-1).float().cpu() for k in self.keys]
                         ).numpy().astype(np.float32, copy=True)

    def _load(self, flat: np.ndarray) -> None:
        t = torch.from_numpy(np.ascontiguousarray(flat, np.float32)).to(self.device)
        sd = self.model.state_dict()
        i = 0
        with torch.no_grad():
            for k, n, s in zip(self.keys, self.sizes, self.shapes, strict=True):
                sd[k].copy_(t[i:i + n].view(s))
                i += n

    def initial_state(self) -> np.ndarray:
        return self._init.copy()

    def _x(self, x: np.ndarray) -> torch.Tensor:
        """Samples as the model's input. Images (C, H, W) are laid out channels-last in memory
        (the logical shape stays N, C, H, W): oneDNN's CPU convolutions and pooling run 1.4x
        faster on it for the pfl-research CNN (benchmarks/bench_cifar.py), and it is the layout a
        user gets from ``torch.from_numpy(nhwc).permute(0, 3, 1, 2)``."""
        t = torch.from_numpy(np.ascontiguousarray(x, np.float32)).reshape(
            (-1, *self.input_shape)).to(self.device)
        if t.dim() == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
        x, y = self.dataset.test_data()
        self._load(flat)
        self.model.eval()
        tot = correct = 0.0
        with torch.no_grad():
            for s in range(0, len(y), EVAL_BATCH):
                xb = self._x(x[s:s + EVAL_BATCH])
                yb = torch.from_numpy(np.asarray(y[s:s + EVAL_BATCH], np.int64)).to(self.device)
                logits = self.model(xb)
                tot += float(_per_sample(self.loss, logits, yb).sum())
                correct += float((logits.argmax(1) == yb).sum())
        n = max(len(y), 1)
        return correct / n, tot / n

    def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                         steps: int) -> np.ndarray:
        """Each client's held-out loss and accuracy, before and after ``steps`` fine-tuning
        steps (simulator/workloads/client_eval.py)."""
        from simulator.workloads import client_eval as CE

        model, dev = self.model, self.device

        def y_of(y: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.asarray(y, np.int64)).to(dev)

        def score(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
            model.eval()
            return CE.classifier_score(model, self._x(x), y_of(y),
                                       lambda lg, yb: _per_sample(self.loss, lg, yb), EVAL_BATCH)

        def tune(x: np.ndarray, y: np.ndarray, plan: np.ndarray, seed: int) -> None:
            xt, yt = self._x(x), y_of(y)
            params = [p for p in model.parameters() if p.requires_grad]
            model.train()

            def loss_of(idx: torch.Tensor) -> torch.Tensor | None:
                if self.bn and len(idx) < 2:  # batch norm needs two samples
                    return None
                idx = idx.to(dev)
                return _per_sample(self.loss, model(xt[idx]), yt[idx]).mean()

            CE.run_steps(params, plan, self.scenario.training, loss_of)

        try:
            return CE.evaluate_clients(self.dataset, flat, client_ids, seeds, steps, self.batch,
                                       self._load, score, tune)
        finally:
            model.eval()

    # --- training -------------------------------------------------------------------------------
    def _train_one(self, global_flat: np.ndarray, x: np.ndarray, y: np.ndarray, seed: int
                   ) -> tuple[np.ndarray, float, float]:
        model = self.model
        self._load(global_flat)
        model.train()
        torch.manual_seed(int(seed) % (2**63))  # dropout and other random layers
        params = [p for p in model.parameters() if p.requires_grad]
        if self.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=self.lr,
                                                         momentum=self.momentum)
        else:
            opt = torch.optim.Adam(params, lr=self.lr)
        hook = self.client_training
        g0 = [p.detach().clone() for p in params] if hook is not None else []
        plan = batch_plan(len(y), self.epochs, self.batch, np.random.default_rng(int(seed)))
        xt, yt = self._x(x), torch.from_numpy(np.asarray(y, np.int64)).to(self.device)
        tot = tot_sq = 0.0
        cnt = 0
        for row in plan:
            idx = torch.from_numpy(row[row >= 0]).to(self.device)
            if len(idx) == 0 or (self.bn and len(idx) < 2):
                continue
            opt.zero_grad(set_to_none=True)
            per = _per_sample(self.loss, model(xt[idx]), yt[idx])
            per.mean().backward()
            if hook is not None:  # the strategy's gradient correction, e.g. mu (w - w_g)
                with torch.no_grad():
                    for p, p0 in zip(params, g0, strict=True):
                        if p.grad is not None:
                            p.grad.add_(hook.correction(p, p0))
            opt.step()
            d = per.detach()
            tot += float(d.sum())
            tot_sq += float((d * d).sum())
            cnt += len(idx)
        return self._flat(), tot / max(cnt, 1), tot_sq / max(cnt, 1)

    def train_clients(self, global_flat: np.ndarray, jobs: JobBatch, batched: bool
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Final states [C, P], mean losses and mean squared losses per client, batched or one
        by one (for tests comparing the two)."""
        data = [self.dataset.client_data(int(c)) for c in jobs.client_ids]
        if batched:
            if self._batched is None:
                raise ValueError(f"cannot batch: {self.why_not_batched or 'not enabled'}")
            return self._batched.train(global_flat, [(x, y, int(sd)) for (x, y), sd
                                                     in zip(data, jobs.seeds, strict=True)])
        out = [self._train_one(global_flat, x, y, int(sd))
               for (x, y), sd in zip(data, jobs.seeds, strict=True)]
        return (np.stack([o[0] for o in out]), np.array([o[1] for o in out]),
                np.array([o[2] for o in out]))

    def _results(self, global_flat: np.ndarray, jobs: JobBatch) -> Any:
        """(cid, final, loss, loss_sq, n) per job: batched when enabled, else one by one."""
        if self._batched is not None and len(jobs):
            data = [self.dataset.client_data(int(c)) for c in jobs.client_ids]
            finals, loss, loss_sq = self._batched.train(
                global_flat, [(x, y, int(sd)) for (x, y), sd in zip(data, jobs.seeds,
                                                                     strict=True)])
            for j, cid in enumerate(jobs.client_ids):
                yield cid, finals[j], float(loss[j]), float(loss_sq[j]), len(data[j][1])
            return
        for cid, seed in zip(jobs.client_ids, jobs.seeds, strict=True):
            x, y = self.dataset.client_data(int(cid))
            final, loss1, loss_sq1 = self._train_one(global_flat, x, y, int(seed))
            yield cid, final, loss1, loss_sq1, len(y)

    def train(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        t0 = time.perf_counter()
        part = Partial.empty(self.n_params)
        g64 = global_flat.astype(np.float64)
        kept: list[np.ndarray] = []  # individual updates, for rules that read each one
        for cid, final, loss, loss_sq, n_y in self._results(global_flat, jobs):
            n = np.array([n_y], np.int64)
            if self.update_hook is None:
                part = part.merge(group_partial(np.array([cid]), [final], g64, n, [loss],
                                                [loss_sq]))
                if self.keep_updates:
                    kept.append(final.astype(np.float64) - g64)
                continue
            delta, w = self.update_hook(jobs.round, int(cid), final.astype(np.float64) - g64,
                                        float(n[0]))
            part.add_client(int(cid), delta, w, int(n[0]), loss, loss_sq)
            if self.keep_updates:
                kept.append(delta)
        if self.keep_updates:
            part.updates = np.stack(kept) if kept else np.zeros((0, self.n_params))
        part.wall_s = time.perf_counter() - t0
        return part
