"""Batched clients for ``nn.Module`` workloads (``executor.batched_vision``): the clients of one
call that start from the same global model train together, through ``torch.func``.

Each client's parameters are a row of stacked tensors ``[C, *shape]``; one step is
``vmap(grad(loss))(params, x, y, mask)`` over the clients still training, each on its own
mini-batch from :func:`simulator.workloads.mlp.batch_plan` (the same plan, so the same samples in
the same order as the per-client path), then each client's own SGD update. Batches are padded
to ``training.batch_size`` and masked: a padded sample adds nothing to the loss or its gradient
(the masked mean over the real samples, as the per-client mean). Clients are ordered by step
count, so those still training at step ``s`` are a suffix of the group and clients that have
finished are left untouched (not merely masked).

Results equal per-client training up to float rounding (vmap's batched kernels sum in another
order; tests/test_batched_clients.py states the tolerance). Not every module can be batched:
:func:`why_not_batched` names what stops it (batch norm or other float buffers, dropout and
other random layers, a user loss, frozen parameters, Adam), and the workload then trains
clients one by one as before.

On CPU, vmap turns a convolution with per-client weights into a grouped convolution that is
slower than per-client convolutions of the same total size (measured in benchmarks/
bench_cifar.py), which is why this path is opt-in; on a GPU it replaces C small kernel launches
by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from simulator.workloads.mlp import batch_plan

GROUP = 64  # clients trained together (activation memory grows with it)

_RANDOM = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
           nn.FeatureAlphaDropout)


def why_not_batched(model: nn.Module, loss: Any, optimizer: str) -> str | None:
    """Why ``model`` cannot train batched (one line), or None when it can."""
    if optimizer != "sgd":
        return f"training.optimizer '{optimizer}' (batched vision clients use SGD)"
    if loss is not None:
        return "the factory's own loss (batched vision clients use cross-entropy)"
    if any(b.is_floating_point() for b in model.buffers()):
        return "the model has float buffers (batch norm running statistics)"
    if any(isinstance(m, _RANDOM) for m in model.modules()):
        return "the model has dropout (per-client random streams)"
    if any(not p.requires_grad for p in model.parameters()):
        return "the model has frozen parameters"
    return None


class BatchedTrainer:
    """Trains groups of clients of one ``nn.Module`` at once (see the module docstring)."""

    def __init__(self, model: nn.Module, keys: list[str], shapes: list[tuple[int, ...]],
                 input_shape: tuple[int, ...], epochs: int, batch: int, lr: float,
                 momentum: float, client_training: Any, device: torch.device) -> None:
        self.model, self.keys, self.shapes = model, keys, shapes
        self.sizes = [int(np.prod(s)) for s in shapes]
        self.input_shape = input_shape
        self.epochs, self.batch, self.lr, self.momentum = epochs, batch, lr, momentum
        self.hook, self.device = client_training, device

        def loss_fn(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                    m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            per = nn.functional.cross_entropy(functional_call(model, params, (x,)), y,
                                              reduction="none")
            per = per * m
            return per.sum() / m.sum().clamp(min=1.0), per

        self._grad = vmap(grad(loss_fn, has_aux=True))

    def train(self, global_flat: np.ndarray, clients: list[tuple[np.ndarray, np.ndarray, int]]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``clients``: (x, y, seed) each. Returns final states [C, P] (float32) and per-client
        mean loss and mean squared loss over the samples seen, in the clients' order."""
        c = len(clients)
        plans = [batch_plan(len(y), self.epochs, self.batch, np.random.default_rng(int(sd)))
                 for _, y, sd in clients]
        n_steps = np.fromiter((p.shape[0] for p in plans), np.int64, c)
        order = np.argsort(n_steps, kind="stable")
        p_total = int(sum(self.sizes))
        finals = np.empty((c, p_total), np.float32)
        loss = np.zeros(c)
        loss_sq = np.zeros(c)
        for s in range(0, c, GROUP):
            sel = order[s:s + GROUP]
            f, lo, lq = self._group(global_flat, [clients[i] for i in sel],
                                    [plans[i] for i in sel])
            finals[sel], loss[sel], loss_sq[sel] = f, lo, lq
        return finals, loss, loss_sq

    def _group(self, global_flat: np.ndarray, clients: list[Any], plans: list[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dev, c, b = self.device, len(clients), self.batch
        n_steps = np.fromiter((p.shape[0] for p in plans), np.int64, c)  # non-decreasing
        steps = int(n_steps[-1]) if c else 0
        lo_at = np.searchsorted(n_steps, np.arange(steps), side="right")
        lens = np.fromiter((len(y) for _, y, _ in clients), np.int64, c)
        offs = np.zeros(c, np.int64)
        np.cumsum(lens[:-1], out=offs[1:])
        # all shards in one tensor; its last row (index -1) is the zero sample padding reads
        x_all = torch.from_numpy(np.ascontiguousarray(np.concatenate(
            [np.asarray(x, np.float32).reshape(len(x), -1) for x, _, _ in clients]
            + [np.zeros((1, int(np.prod(self.input_shape))), np.float32)]))).to(dev)
        x_all = x_all.reshape((-1, *self.input_shape))
        y_all = torch.from_numpy(np.concatenate(
            [np.asarray(y, np.int64) for _, y, _ in clients] + [np.zeros(1, np.int64)])).to(dev)
        gidx = np.full((steps, c, b), -1, np.int64)
        for j, plan in enumerate(plans):
            gidx[:plan.shape[0], j] = plan
        valid = gidx >= 0
        gidx += offs[None, :, None]
        gidx[~valid] = -1
        gidx_t = torch.from_numpy(gidx).to(dev)
        mask_t = torch.from_numpy(valid.astype(np.float32)).to(dev)
        g = torch.from_numpy(np.ascontiguousarray(global_flat, np.float32)).to(dev)
        params: dict[str, torch.Tensor] = {}
        g0: dict[str, torch.Tensor] = {}
        i = 0
        for k, n, shp in zip(self.keys, self.sizes, self.shapes, strict=True):
            g0[k] = g[i:i + n].view(1, *shp)
            params[k] = g0[k].repeat(c, *([1] * len(shp))).contiguous()
            i += n
        mu, lr, hook = self.momentum, self.lr, self.hook
        bufs: dict[str, torch.Tensor] = {}
        tot = torch.zeros(c, dtype=torch.float64, device=dev)
        tot_sq = torch.zeros(c, dtype=torch.float64, device=dev)
        for s in range(steps):
            lo = int(lo_at[s])
            idx = gidx_t[s, lo:]  # [n, B]
            xb = x_all[idx.reshape(-1)].reshape((idx.shape[0], b, *self.input_shape))
            yb, mb = y_all[idx], mask_t[s, lo:]
            act = {k: v[lo:] for k, v in params.items()}
            grads, per = self._grad(act, xb, yb, mb)
            per = per.double()
            tot[lo:] += per.sum(1)
            tot_sq[lo:] += (per * per).sum(1)
            with torch.no_grad():
                for k, p in act.items():
                    gr = grads[k]
                    if hook is not None:  # the strategy's gradient correction (FedProx ...)
                        gr = gr + hook.correction(p, g0[k])
                    if mu > 0:  # torch.optim.SGD: buf = g at the first step, then mu*buf + g
                        if k not in bufs:
                            bufs[k] = torch.zeros_like(params[k])
                        v = bufs[k][lo:]
                        if s == 0:
                            v.copy_(gr)
                        else:
                            v.mul_(mu).add_(gr)
                        gr = v
                    p.sub_(gr, alpha=lr)
        flat = torch.cat([params[k].reshape(c, -1) for k in self.keys], dim=1).cpu().numpy()
        counts = valid.sum(axis=(0, 2)).clip(min=1)
        return (flat.astype(np.float32, copy=False), tot.cpu().numpy() / counts,
                tot_sq.cpu().numpy() / counts)
