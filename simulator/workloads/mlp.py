"""MLP classifier workload: sequential and batched (torch.func.vmap) client training.

Batched training runs up to ``GROUP`` clients at once: each client's batches are padded to a
common [steps, batch] grid with a mask; a padded step leaves parameters and optimizer state
untouched, so every client follows exactly the trajectory it would follow alone.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from simulator import rng as rngmod
from simulator.aggregation import Partial
from simulator.data import build_dataset
from simulator.execution.base import JobBatch

GROUP = 256  # clients trained at once in the batched path
CACHE_BYTES = 256 * 2**20  # resident client shards per host


def build_mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def batch_plan(n: int, epochs: int, batch: int, g: np.random.Generator) -> np.ndarray:
    """[steps, batch] sample indices for one client, -1 where a short last batch is padded."""
    per_epoch = -(-n // batch)
    plan = np.full((epochs * per_epoch, batch), -1, np.int64)
    for e in range(epochs):
        perm = g.permutation(n)
        padded = np.full(per_epoch * batch, -1, np.int64)
        padded[:n] = perm
        plan[e * per_epoch:(e + 1) * per_epoch] = padded.reshape(per_epoch, batch)
    return plan


class MLPWorkload:
    def __init__(self, scenario: Any, population_size: int) -> None:
        self.scenario = scenario
        self.dataset = build_dataset(scenario, population_size)
        t = scenario.training
        self.epochs, self.batch, self.lr = t.epochs, t.batch_size, t.lr
        self.optimizer, self.momentum = t.optimizer, t.momentum
        self.batched = scenario.executor.batched
        self.sizes = [self.dataset.n_features, *scenario.model.hidden, self.dataset.n_classes]
        torch.manual_seed(rngmod.int_seed(scenario.seed, rngmod.INIT))
        self.model = build_mlp(self.sizes)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.shapes = [p.shape for p in self.model.parameters()]
        self.n_params = int(sum(p.numel() for p in self.model.parameters()))
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_bytes = 0
        self._init = nn.utils.parameters_to_vector(self.model.parameters()).detach().numpy().copy()

    # --- state ----------------------------------------------------------------------------------
    def initial_state(self) -> np.ndarray:
        return self._init.copy()

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            n = int(np.prod(shape))
            out[name] = flat[i:i + n].view(shape)
            i += n
        return out

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
        x, y = self.dataset.test_data()
        with torch.no_grad():
            params = self._unflatten(torch.from_numpy(np.ascontiguousarray(flat, np.float32)))
            logits = functional_call(self.model, params, (torch.from_numpy(x),))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
            acc = (logits.argmax(1).numpy() == y).mean()
        return float(acc), float(loss)

    # --- training -------------------------------------------------------------------------------
    def _client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        """A client's shard, kept resident in this host up to CACHE_BYTES (then regenerated)."""
        hit = self._cache.get(cid)
        if hit is None:
            hit = self.dataset.client_data(cid)
            size = hit[0].nbytes + hit[1].nbytes
            if self._cache_bytes + size <= CACHE_BYTES:
                self._cache[cid] = hit
                self._cache_bytes += size
        return hit

    def _client_inputs(self, cid: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y = self._client_data(int(cid))
        plan = batch_plan(len(y), self.epochs, self.batch, np.random.default_rng(int(seed)))
        return x, y, plan

    def train(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        t0 = time.perf_counter()
        part = Partial.empty(self.n_params)
        can_batch = self.batched and self.optimizer in ("sgd", "adam")
        trainer = self._train_group if can_batch else self._train_sequential
        # Group clients of similar size to limit padding (results do not depend on grouping).
        order = np.argsort(self.dataset.n_samples[jobs.client_ids], kind="stable")
        for s in range(0, len(jobs), GROUP):
            sel = order[s:s + GROUP]
            ids, seeds = jobs.client_ids[sel], jobs.seeds[sel]
            inputs = [self._client_inputs(c, sd) for c, sd in zip(ids, seeds)]
            finals, losses, losses_sq = trainer(global_flat, inputs)
            for j, cid in enumerate(ids):
                n = len(inputs[j][1])
                delta = finals[j].astype(np.float64) - global_flat.astype(np.float64)
                part.add_client(int(cid), delta, float(n), n, losses[j], losses_sq[j])
        part.wall_s = time.perf_counter() - t0
        return part

    def train_clients(self, global_flat: np.ndarray, jobs: JobBatch, batched: bool) -> np.ndarray:
        """Final parameters per client (for tests comparing batched and sequential)."""
        inputs = [self._client_inputs(c, sd) for c, sd in zip(jobs.client_ids, jobs.seeds)]
        fn = self._train_group if batched else self._train_sequential
        return np.stack(fn(global_flat, inputs)[0])

    def _train_sequential(self, global_flat, inputs):  # type: ignore[no-untyped-def]
        finals, losses, losses_sq = [], [], []
        model = self.model
        for x, y, plan in inputs:
            nn.utils.vector_to_parameters(torch.from_numpy(global_flat.astype(np.float32)),
                                          model.parameters())
            if self.optimizer == "sgd":
                opt: torch.optim.Optimizer = torch.optim.SGD(
                    model.parameters(), lr=self.lr, momentum=self.momentum)
            else:
                opt = torch.optim.Adam(model.parameters(), lr=self.lr)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            tot = tot_sq = 0.0
            cnt = 0
            for row in plan:
                idx = torch.from_numpy(row[row >= 0])
                opt.zero_grad(set_to_none=True)
                per = nn.functional.cross_entropy(model(xt[idx]), yt[idx], reduction="none")
                per.mean().backward()
                opt.step()
                tot += float(per.detach().sum())
                tot_sq += float((per.detach() ** 2).sum())
                cnt += len(idx)
            finals.append(nn.utils.parameters_to_vector(model.parameters()).detach().numpy().copy())
            losses.append(tot / max(cnt, 1))
            losses_sq.append(tot_sq / max(cnt, 1))
        return finals, losses, losses_sq

    def _train_group(self, global_flat, inputs):  # type: ignore[no-untyped-def]
        """Train clients at once with grouped matmuls (bmm) and hand-written backprop.

        Shapes: C clients, S steps, B batch, weights W_l [C, out, in], activations [C, B, width].
        """
        c = len(inputs)
        steps = max(p[2].shape[0] for p in inputs)
        d = self.sizes[0]
        xs = np.zeros((steps, c, self.batch, d), np.float32)
        ys = np.zeros((steps, c, self.batch), np.int64)
        ms = np.zeros((steps, c, self.batch), np.float32)
        for j, (x, y, plan) in enumerate(inputs):
            s = plan.shape[0]
            valid = plan >= 0
            xs[:s, j][valid] = x[plan[valid]]
            ys[:s, j][valid] = y[plan[valid]]
            ms[:s, j][valid] = 1.0
        xs_t, ys_t, ms_t = torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(ms)
        g0 = self._unflatten(torch.from_numpy(global_flat.astype(np.float32)))
        n_layers = len(self.sizes) - 1
        ws = [g0[f"{2 * i}.weight"].unsqueeze(0).repeat(c, 1, 1) for i in range(n_layers)]
        bs = [g0[f"{2 * i}.bias"].unsqueeze(0).repeat(c, 1) for i in range(n_layers)]
        params = ws + bs
        st1 = [torch.zeros_like(p) for p in params]
        st2 = [torch.zeros_like(p) for p in params]
        t_step = torch.zeros(c)
        tot = torch.zeros(c, dtype=torch.float64)
        tot_sq = torch.zeros(c, dtype=torch.float64)
        lr, mu = self.lr, self.momentum
        b1, b2, eps = 0.9, 0.999, 1e-8
        k = self.sizes[-1]
        for s in range(steps):
            m = ms_t[s]  # [C, B]
            cnt = m.sum(1)
            active = cnt > 0
            # forward
            hs = [xs_t[s]]
            for i in range(n_layers):
                z = torch.baddbmm(bs[i].unsqueeze(1), hs[-1], ws[i].transpose(1, 2))
                hs.append(torch.relu(z) if i < n_layers - 1 else z)
            logp = torch.log_softmax(hs[-1], dim=2)
            per = -logp.gather(2, ys_t[s].unsqueeze(2)).squeeze(2) * m  # [C, B]
            tot += per.sum(1).double()
            tot_sq += (per * per).sum(1).double()
            # backward of mean cross-entropy over real samples
            dz = logp.exp()
            dz.scatter_add_(2, ys_t[s].unsqueeze(2), -torch.ones(c, self.batch, 1))
            dz = dz * (m / cnt.clamp(min=1.0).unsqueeze(1)).unsqueeze(2)
            gw: list[torch.Tensor] = [torch.empty(0)] * n_layers
            gb: list[torch.Tensor] = [torch.empty(0)] * n_layers
            for i in range(n_layers - 1, -1, -1):
                gw[i] = torch.bmm(dz.transpose(1, 2), hs[i])
                gb[i] = dz.sum(1)
                if i > 0:
                    dz = torch.bmm(dz, ws[i]) * (hs[i] > 0)
            grads = gw + gb
            t_step = t_step + active.float()
            for j, (p, g) in enumerate(zip(params, grads)):
                a = active.view((c,) + (1,) * (p.dim() - 1))
                if self.optimizer == "sgd":
                    if mu > 0:
                        st1[j] = torch.where(a, mu * st1[j] + g, st1[j])
                        g = st1[j]
                    params[j] = torch.where(a, p - lr * g, p)
                else:  # Adam, as torch.optim.Adam with default betas and eps
                    st1[j] = torch.where(a, b1 * st1[j] + (1 - b1) * g, st1[j])
                    st2[j] = torch.where(a, b2 * st2[j] + (1 - b2) * g * g, st2[j])
                    tt = t_step.clamp(min=1).view(a.shape)
                    bc1 = 1 - b1 ** tt
                    bc2 = 1 - b2 ** tt
                    upd = lr / bc1 * st1[j] / (st2[j].sqrt() / bc2.sqrt() + eps)
                    params[j] = torch.where(a, p - upd, p)
            ws, bs = params[:n_layers], params[n_layers:]
        del k
        flat = torch.cat(
            [t.reshape(c, -1) for i in range(n_layers) for t in (ws[i], bs[i])], dim=1
        ).numpy()
        counts = ms.sum(axis=(0, 2)).clip(min=1)
        return list(flat), list(tot.numpy() / counts), list(tot_sq.numpy() / counts)
