"""MLP classifier workload: sequential and batched (grouped bmm) client training.

Batched training runs up to ``GROUP`` clients at once: each client's batches are padded to a
common [steps, batch] grid with a mask; a padded step leaves parameters and optimizer state
untouched, so every client follows exactly the trajectory it would follow alone. A host granted
a GPU (``executor.num_gpus_per_actor > 0``) runs the batched path on CUDA; CPU is the default.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from simulator import FedFleetError
from simulator.aggregation import Partial
from simulator.aggregation.fedavg import SCALE, quantize_weighted
from simulator.core import rng as rngmod
from simulator.core.jobs import JobBatch
from simulator.data import build_dataset
from simulator.data.base import PooledDataset
from simulator.privacy import make_update_hook
from simulator.workloads.seeded import permutations


def client_training_for(scenario: Any) -> Any:
    """The scenario's strategy's client side (``ClientTraining``), or None. Plugins listed under
    ``plugins:`` are imported first, so that actors find plugin strategies too."""
    from simulator.aggregation.strategy import build_strategy
    from simulator.core.registry import load_plugins

    load_plugins(getattr(scenario, "plugins", ()))
    get = getattr(build_strategy(scenario), "client_training", None)
    return get() if get is not None else None

GROUP = 256  # clients trained at once in the batched path (CPU)
GPU_GROUP = 4096  # on a GPU, larger groups amortise kernel launches
CACHE_BYTES = 256 * 2**20  # resident client shards per host
_LIMIT = float(2**62)  # fixed-point bound, as in fedavg.quantize_weighted


def build_mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def batch_plan(n: int, epochs: int, batch: int, g: np.random.Generator) -> np.ndarray:
    """[steps, batch] sample indices for one client, -1 where a short last batch is padded."""
    per_epoch = -(-n // batch)
    plan = np.full((epochs, per_epoch * batch), -1, np.int64)
    for e in range(epochs):
        plan[e, :n] = g.permutation(n)
    return plan.reshape(epochs * per_epoch, batch)


def pick_device(scenario: Any) -> torch.device:
    """CUDA when the executor grants GPUs (num_gpus_per_actor > 0) and torch sees one; else CPU."""
    want = float(getattr(scenario.executor, "num_gpus_per_actor", 0.0)) > 0
    return torch.device("cuda") if want and torch.cuda.is_available() else torch.device("cpu")


def group_partial(ids: np.ndarray, finals: list[np.ndarray], g64: np.ndarray, n: np.ndarray,
                  losses: list[float], losses_sq: list[float]) -> Partial:
    """The fixed-point sum of a group's updates, weighted by samples: ``add_client`` per client
    vectorised over rows (int64 sums are exact, so the result is bit-identical)."""
    q = np.zeros(g64.shape[0], np.int64)
    rows = max(1, 2**20 // (8 * max(1, g64.shape[0])))  # float64 scratch that stays in cache
    for s in range(0, len(finals), rows):
        x = np.array(finals[s:s + rows], np.float64)  # one copy (never a view of finals)
        np.subtract(x, g64, out=x)
        np.multiply(x, (n[s:s + rows].astype(np.float64) * SCALE)[:, None], out=x)
        if not (x.max() < _LIMIT and x.min() > -_LIMIT):  # also false for NaN
            for row, w in zip(finals[s:s + rows], n[s:s + rows], strict=True):
                quantize_weighted(row.astype(np.float64) - g64, float(w))  # raises the error
        np.rint(x, out=x)
        q += x.astype(np.int64).sum(0)
    weight = np.full(g64.shape[0], float(n.sum()))
    return Partial(q, weight, np.asarray(ids, np.int64), n.astype(np.int64),
                   np.asarray(losses, np.float64), np.asarray(losses_sq, np.float64))


class MLPWorkload:
    def __init__(self, scenario: Any, population_size: int) -> None:
        self.scenario = scenario
        self.dataset = build_dataset(scenario, population_size)
        t = scenario.training
        self.epochs, self.batch, self.lr = t.epochs, t.batch_size, t.lr
        self.optimizer, self.momentum = t.optimizer, t.momentum
        self.batched = scenario.executor.batched
        self.device = pick_device(scenario)
        self.update_hook = make_update_hook(scenario)  # DP clipping/noise; None when off
        # The strategy's client side (a proximal term, control variates); None for FedAvg.
        self.client_training = client_training_for(scenario)
        # Robust rules read individual updates (strategy declares needs:client_updates).
        from simulator.aggregation.strategy import needs_client_updates

        self.keep_updates = needs_client_updates(scenario)
        self.adversary = getattr(scenario, "adversary", None)  # Byzantine clients' attack
        self.sizes = [self.dataset.n_features, *scenario.model.hidden, self.dataset.n_classes]
        torch.manual_seed(rngmod.int_seed(scenario.seed, rngmod.INIT))
        self.model = build_mlp(self.sizes)
        self.names = [n for n, _ in self.model.named_parameters()]
        self.shapes = [p.shape for p in self.model.parameters()]
        self.n_params = int(sum(p.numel() for p in self.model.parameters()))
        self._cache: dict[int, tuple[np.ndarray, ...]] = {}  # shard arrays or row indices
        self._cache_bytes = 0
        self._init = nn.utils.parameters_to_vector(self.model.parameters()).detach().numpy().copy()

    # --- state ----------------------------------------------------------------------------------
    def initial_state(self) -> np.ndarray:
        return self._init.copy()

    def _unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat parameter vector [P] as views by parameter name."""
        return {k: v[0] for k, v in self._unflatten_rows(flat.view(1, -1)).items()}

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
        x, y = self.dataset.test_data()
        with torch.no_grad():
            params = self._unflatten(torch.from_numpy(np.ascontiguousarray(flat, np.float32)))
            logits = functional_call(self.model, params, (torch.from_numpy(x),))
            loss = nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
            acc = (logits.argmax(1).numpy() == y).mean()
        return float(acc), float(loss)

    def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                         steps: int) -> np.ndarray:
        """Each client's held-out loss and accuracy, before and after ``steps`` fine-tuning
        steps (simulator/workloads/client_eval.py)."""
        from simulator.workloads import client_eval as CE

        model, params = self.model, list(self.model.parameters())

        def load(f: np.ndarray) -> None:
            nn.utils.vector_to_parameters(torch.from_numpy(f.astype(np.float32)), params)

        def score(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
            return CE.classifier_score(model, torch.from_numpy(np.asarray(x, np.float32)),
                                       torch.from_numpy(np.asarray(y, np.int64)),
                                       lambda lg, yb: nn.functional.cross_entropy(
                                           lg, yb, reduction="none"))

        def tune(x: np.ndarray, y: np.ndarray, plan: np.ndarray, seed: int) -> None:
            xt = torch.from_numpy(np.asarray(x, np.float32))
            yt = torch.from_numpy(np.asarray(y, np.int64))
            CE.run_steps(params, plan, self.scenario.training,
                         lambda idx: nn.functional.cross_entropy(model(xt[idx]), yt[idx]))

        try:
            return CE.evaluate_clients(self.dataset, flat, client_ids, seeds, steps, self.batch,
                                       load, score, tune)
        finally:
            for p in params:
                p.grad = None

    # --- training -------------------------------------------------------------------------------
    def _client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        """A client's shard, kept resident in this host up to CACHE_BYTES (then regenerated).

        Shards of a pooled dataset (digits) are rows of one shared pool: only their row indices
        are cached (8 bytes a sample instead of a copy of every row)."""
        hit = self._client_hit(cid)
        ds = self.dataset
        if len(hit) == 1:  # as PooledDataset.client_data
            assert isinstance(ds, PooledDataset)
            return ds.x_train[hit[0]], ds.y_train[hit[0]]
        return hit  # type: ignore[return-value]

    def _client_hit(self, cid: int) -> tuple[np.ndarray, ...]:
        """``(row indices,)`` of a pooled dataset's client, else its ``(x, y)``; cached."""
        hit = self._cache.get(cid)
        if hit is None:
            ds = self.dataset
            hit = (ds.client_indices(cid),) if isinstance(ds, PooledDataset) \
                else ds.client_data(cid)
            size = sum(a.nbytes for a in hit)
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
        g64 = global_flat.astype(np.float64)
        can_batch = self.batched and self.optimizer in ("sgd", "adam")
        trainer = self._train_group if can_batch else self._train_sequential
        # Group clients of similar size to limit padding (results do not depend on grouping).
        order = np.argsort(self.dataset.n_samples[jobs.client_ids], kind="stable")
        group = GROUP if self.device.type == "cpu" else GPU_GROUP
        col = getattr(self.client_training, "column", None)  # per-client rows (SCAFFOLD)
        if col is not None and col not in jobs.assignment:
            raise FedFleetError(f"aggregation.strategy: the jobs lack the '{col}' column its "
                                "client side needs")
        for s in range(0, len(jobs), group):
            sel = order[s:s + group]
            ids, seeds = jobs.client_ids[sel], jobs.seeds[sel]
            adv, byz = self.adversary, jobs.assignment.get("byzantine")
            byz = None if byz is None or adv is None else np.asarray(byz)[sel]
            flip = byz if byz is not None and adv is not None and adv.attack == "label_flip" \
                else None
            offsets = None if col is None else np.asarray(jobs.assignment[col])[sel]
            if can_batch:  # padded [steps, C, B] arrays gathered straight from the shards
                xs, ys, ms, n_steps, n = self._group_arrays(ids, seeds, flip)
                finals, losses, losses_sq = self._train_padded(global_flat, xs, ys, ms, n_steps,
                                                               offsets)
            else:
                inputs = [self._client_inputs(c, sd) for c, sd in zip(ids, seeds, strict=True)]
                if flip is not None:
                    k = self.dataset.n_classes
                    inputs = [(x, (k - 1 - y).astype(y.dtype), pl) if b else (x, y, pl)
                              for (x, y, pl), b in zip(inputs, flip, strict=True)]
                finals, losses, losses_sq = trainer(global_flat, inputs, offsets)
                n_steps = np.fromiter((inp[2].shape[0] for inp in inputs), np.int64, len(inputs))
                n = np.fromiter((len(inp[1]) for inp in inputs), np.int64, len(inputs))
            if byz is not None:
                finals = self._attack(finals, g64, byz, seeds)
            state = None if offsets is None else self._client_state(finals, g64, offsets,
                                                                    n_steps)
            if self.update_hook is None:
                gp = group_partial(ids, finals, g64, n, losses, losses_sq)
                if self.keep_updates:
                    gp.updates = np.stack(finals).astype(np.float64) - g64
                gp.client_state = state
                part = part.merge(gp)
                continue
            gp, kept = Partial.empty(self.n_params), []
            for j, cid in enumerate(ids):  # DP: clip (and noise) each update; weight 1
                delta, w = self.update_hook(jobs.round, int(cid),
                                            finals[j].astype(np.float64) - g64, float(n[j]))
                gp.add_client(int(cid), delta, w, int(n[j]), losses[j], losses_sq[j])
                kept.append(delta)
            if self.keep_updates:
                gp.updates = np.stack(kept).astype(np.float64)
            gp.client_state = state
            part = part.merge(gp)
        part.wall_s = time.perf_counter() - t0
        return part

    def _client_state(self, finals: Any, g64: np.ndarray, offsets: np.ndarray,
                      n_steps: np.ndarray) -> np.ndarray:
        """The strategy's new per-client state (SCAFFOLD: c_i+) from each client's update."""
        hook = self.client_training
        return np.stack([hook.client_state(f.astype(np.float64) - g64, off, int(st))
                         for f, off, st in zip(finals, offsets, n_steps, strict=True)])

    def _attack(self, finals: list[np.ndarray], g64: np.ndarray, byz: np.ndarray,
                seeds: np.ndarray) -> list[np.ndarray]:
        """What Byzantine clients send instead of their update (simulator/config/adversary.py);
        label_flip already poisoned their training labels."""
        adv = self.adversary
        if adv is None or adv.attack == "label_flip":
            return finals
        out = list(finals)
        for j in np.flatnonzero(byz):
            delta = finals[j].astype(np.float64) - g64
            if adv.attack == "sign_flip":
                bad = -adv.scale * delta
            elif adv.attack == "scale":
                bad = adv.scale * delta
            else:  # gaussian: noise keyed by the job's training seed
                g = np.random.default_rng(np.random.SeedSequence([int(seeds[j]), 0xBAD]))
                bad = g.normal(0.0, adv.scale, delta.shape)
            out[j] = (g64 + bad).astype(finals[j].dtype)
        return out

    def train_clients(self, global_flat: np.ndarray, jobs: JobBatch, batched: bool) -> np.ndarray:
        """Final parameters per client (for tests comparing batched and sequential)."""
        inputs = [self._client_inputs(c, sd)
                  for c, sd in zip(jobs.client_ids, jobs.seeds, strict=True)]
        fn = self._train_group if batched else self._train_sequential
        col = getattr(self.client_training, "column", None)
        offsets = None if col is None else np.asarray(jobs.assignment[col])
        return np.stack(fn(global_flat, inputs, offsets)[0])

    def _unflatten_rows(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-client rows t [C, P] as [C, *shape] views by parameter name."""
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            k = int(np.prod(shape))
            out[name] = t[:, i:i + k].view(t.shape[0], *shape)
            i += k
        return out

    def _offset_params(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        """Per-client rows [C, P] split into [C, *shape] tensors by parameter name."""
        return self._unflatten_rows(torch.from_numpy(np.ascontiguousarray(rows, np.float32)))

    def _train_sequential(self, global_flat, inputs, offsets=None):  # type: ignore[no-untyped-def]
        """One resident model for every client. Plain SGD (the common case) is applied as
        ``torch.optim.SGD`` does on CPU (one ``_foreach_add_`` with ``alpha=-lr``) without the
        optimizer's per-step bookkeeping; loss statistics stay tensors until the client ends
        (no per-step ``float()``), so this path is not slower than a hand-written loop."""
        finals, losses, losses_sq = [], [], []
        model = self.model
        params = list(model.parameters())
        g32 = torch.from_numpy(global_flat.astype(np.float32))
        plain_sgd = self.optimizer == "sgd" and self.momentum == 0
        lr = self.lr
        hook = self.client_training
        for ci, (x, y, plan) in enumerate(inputs):
            nn.utils.vector_to_parameters(g32.clone(), params)
            offs: list[Any] = [None] * len(params)
            if offsets is not None:  # the job's own correction rows (SCAFFOLD: c - c_i)
                by_name = self._offset_params(offsets[ci:ci + 1])
                offs = [by_name[nm][0] for nm in self.names]
            opt: torch.optim.Optimizer | None = None
            if self.optimizer == "sgd" and not plain_sgd:
                opt = torch.optim.SGD(params, lr=lr, momentum=self.momentum)
            elif not plain_sgd:
                opt = torch.optim.Adam(params, lr=lr)
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)
            pers: list[torch.Tensor] = []
            g0 = [p.detach().clone() for p in params] if hook is not None else []
            for row in plan:
                idx = torch.from_numpy(row[row >= 0])
                for p in params:
                    p.grad = None
                per = nn.functional.cross_entropy(model(xt[idx]), yt[idx], reduction="none")
                per.mean().backward()
                if hook is not None:  # the strategy's gradient correction, e.g. mu (w - w_g)
                    with torch.no_grad():
                        for p, p0, off in zip(params, g0, offs, strict=True):
                            corr = hook.correction(p, p0) if off is None \
                                else hook.correction(p, p0, off)
                            p.grad.add_(corr)  # type: ignore[union-attr]
                if opt is not None:
                    opt.step()
                else:
                    with torch.no_grad():
                        torch._foreach_add_(params, [p.grad for p in params], alpha=-lr)  # type: ignore[arg-type,misc]
                pers.append(per.detach())
            cnt = sum(len(p) for p in pers)
            if pers:
                per_all = torch.cat(pers).double()
                tot, tot_sq = float(per_all.sum()), float((per_all * per_all).sum())
            else:
                tot = tot_sq = 0.0
            finals.append(nn.utils.parameters_to_vector(params).detach().numpy().copy())
            losses.append(tot / max(cnt, 1))
            losses_sq.append(tot_sq / max(cnt, 1))
        return finals, losses, losses_sq

    def _pad_group(self, inputs, steps):  # type: ignore[no-untyped-def]
        """[steps, C, B] inputs, labels and mask from each client's (x, y, plan): one gather."""
        c, b, d = len(inputs), self.batch, self.sizes[0]
        lens = np.fromiter((len(y) for _, y, _ in inputs), np.int64, c)
        offs = np.zeros(c, np.int64)
        np.cumsum(lens[:-1], out=offs[1:])
        # Row -1 of the pooled arrays is the zero row that padded slots read.
        x_all = np.concatenate([x for x, _, _ in inputs] + [np.zeros((1, d), np.float32)])
        y_all = np.concatenate([y for _, y, _ in inputs] + [np.zeros(1, np.int64)])
        gidx = np.full((steps, c, b), -1, np.int64)
        for j, (_, _, plan) in enumerate(inputs):
            gidx[:plan.shape[0], j] = plan
        valid = gidx >= 0
        gidx += offs[None, :, None]
        gidx[~valid] = -1
        xs = x_all.astype(np.float32, copy=False)[gidx]
        ys = y_all.astype(np.int64, copy=False)[gidx]
        return xs, ys, valid.astype(np.float32)

    def _group_arrays(self, ids: np.ndarray, seeds: np.ndarray, flip: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(xs, ys, ms, n_steps, n)`` of the clients ``ids``: the [steps, C, B] arrays of
        ``_pad_group`` over ``_client_inputs``, equal element for element, built without the
        per-client plan arrays and shard copies (a pooled dataset's rows are gathered once,
        straight from the pool). ``flip``: clients whose labels are flipped (label_flip)."""
        ds, b, e = self.dataset, self.batch, self.epochs
        c = len(ids)
        pooled = isinstance(ds, PooledDataset)
        hits = [self._client_hit(int(cid)) for cid in ids]
        lens = np.fromiter((len(h[0]) for h in hits), np.int64, c)
        per_epoch = -(-lens // b)
        n_steps = e * per_epoch
        steps = int(n_steps.max()) if c else 0
        base = np.zeros(c, np.int64)
        np.cumsum(lens[:-1], out=base[1:])
        # one (client, epoch) segment of lens[j] samples each; sample i of a segment goes to
        # step epoch * per_epoch + i // b, slot i % b
        seg_len = np.repeat(lens, e)
        seg_client = np.repeat(np.arange(c), e)
        seg_step0 = (np.tile(np.arange(e), c) * np.repeat(per_epoch, e))
        total = int(seg_len.sum())
        seg_start = np.zeros(len(seg_len), np.int64)
        np.cumsum(seg_len[:-1], out=seg_start[1:])
        i = np.arange(total) - np.repeat(seg_start, seg_len)
        cl = np.repeat(seg_client, seg_len)
        gidx = np.full((steps, c, b), -1, np.int64)
        # batch_plan's draws (default_rng(seed).permutation per epoch), bit for bit
        perm_all = permutations(seeds, lens, e)
        gidx[np.repeat(seg_step0, seg_len) + i // b, cl, i % b] = base[cl] + perm_all
        valid = gidx >= 0
        if pooled:
            assert isinstance(ds, PooledDataset)
            rows = np.concatenate([h[0] for h in hits] + [np.zeros(1, np.int64)])
            src = rows[gidx]  # gidx -1 reads the appended 0: zeroed below
            xs = ds.x_train[src].astype(np.float32, copy=False)
            ys = ds.y_train[src].astype(np.int64, copy=False)
        else:
            d = self.sizes[0]
            x_all = np.concatenate([h[0] for h in hits] + [np.zeros((1, d), np.float32)])
            y_all = np.concatenate([h[1] for h in hits] + [np.zeros(1, np.int64)])
            xs = x_all.astype(np.float32, copy=False)[gidx]
            ys = y_all.astype(np.int64, copy=False)[gidx]
        if flip is not None and np.any(flip):
            k = self.dataset.n_classes
            fl = np.asarray(flip, bool)
            ys[:, fl] = k - 1 - ys[:, fl]
        inv = ~valid
        xs[inv] = 0.0
        ys[inv] = 0
        return xs, ys, valid.astype(np.float32), n_steps, lens

    def _train_group(self, global_flat, inputs, offsets=None):  # type: ignore[no-untyped-def]
        """``_train_padded`` over (x, y, plan) inputs, results in the inputs' order."""
        c = len(inputs)
        n_steps = np.fromiter((p[2].shape[0] for p in inputs), np.int64, c)
        order = np.argsort(n_steps, kind="stable")
        inputs = [inputs[i] for i in order]
        steps = int(n_steps[order[-1]]) if c else 0
        xs, ys, ms = self._pad_group(inputs, steps)
        off = None if offsets is None else np.asarray(offsets)[order]
        flat, losses, losses_sq = self._train_padded(global_flat, xs, ys, ms, n_steps[order],
                                                     off)
        inv = np.empty_like(order)
        inv[order] = np.arange(c)
        return list(flat[inv]), list(losses[inv]), list(losses_sq[inv])

    def _train_padded(self, global_flat, xs, ys, ms, n_steps,  # type: ignore[no-untyped-def]
                      offsets=None):
        """Train clients at once with grouped matmuls (bmm) and hand-written backprop.

        Shapes: C clients, S steps, B batch, K classes, weights W_l [C, out, in], hidden
        activations [C, B, width]; the last layer's logits are kept as [C, K, B] because
        torch's log_softmax over a non-last dim is ~10x faster than over a last dim of size K.
        Clients are ordered by step count, so those still training at step s are a suffix
        [lo:] of the group: every op runs on that slice only and finished clients are untouched
        (the same values as masking them out, without paying for them).
        """
        c = len(n_steps)
        order = np.argsort(n_steps, kind="stable")  # identity when already in step order
        if np.any(order != np.arange(c)):
            xs, ys, ms = xs[:, order], ys[:, order], ms[:, order]
            offsets = None if offsets is None else np.asarray(offsets)[order]
        steps = int(n_steps[order[-1]]) if c else 0
        lo_at = np.searchsorted(n_steps[order], np.arange(steps), side="right")
        dev = self.device
        xs_t, ys_t, ms_t = (torch.from_numpy(a).to(dev) for a in (xs, ys, ms))
        g32 = torch.from_numpy(global_flat.astype(np.float32)).to(dev)
        g0 = self._unflatten(g32)
        nl = len(self.sizes) - 1
        # Every client's parameters are one row of flat_t [C, P] (parameters_to_vector order):
        # W_l and b_l are views of it, so the result needs no concatenation at the end.
        flat_t = torch.empty((c, g32.shape[0]), device=dev)
        flat_t.copy_(g32.unsqueeze(0).expand(c, -1))
        rows = self._unflatten_rows(flat_t)
        ws = [rows[f"{2 * i}.weight"] for i in range(nl)]
        bs = [rows[f"{2 * i}.bias"] for i in range(nl)]
        params = ws + bs
        hook = self.client_training
        g_params = ([g0[f"{2 * i}.weight"].unsqueeze(0) for i in range(nl)]
                    + [g0[f"{2 * i}.bias"].unsqueeze(0) for i in range(nl)]) if hook else []
        g_offs: list[Any] = [None] * len(params)
        if offsets is not None:  # each job's correction rows, in the group's step order
            by_name = self._offset_params(np.asarray(offsets))
            g_offs = ([by_name[f"{2 * i}.weight"].to(dev) for i in range(nl)]
                      + [by_name[f"{2 * i}.bias"].to(dev) for i in range(nl)])
        sgd, mu, lr = self.optimizer == "sgd", self.momentum, self.lr
        plain = sgd and mu == 0 and hook is None  # p -= lr * g for every tensor: two foreach ops
        st1 = [torch.zeros_like(p) for p in params] if (mu > 0 or not sgd) else []
        st2 = [torch.zeros_like(p) for p in params] if not sgd else []
        t_step = torch.zeros(c, device=dev) if not sgd else None  # Adam's bias correction
        # log p(y) of every (step, client, slot), written as steps run (clients that finished
        # keep zeros): the loss statistics are reduced once, after the loop
        logp_y = torch.zeros(ms_t.shape, device=dev)
        # the mean's weights: mask / real samples of the step (computed for all steps at once,
        # element for element what each step would compute)
        msc = ms_t / ms_t.sum(2, keepdim=True).clamp(min=1.0)
        ys_u, lp_u, msc_u = ys_t.unsqueeze(2), logp_y.unsqueeze(2), msc.unsqueeze(2)  # [S,C,1,B]
        minus_one = torch.full((c, 1, self.batch), -1.0, device=dev)
        b1, b2, eps = 0.9, 0.999, 1e-8
        views: dict[int, Any] = {}
        for s in range(steps):
            lo = int(lo_at[s])
            vw = views.get(lo)
            if vw is None:  # the still-training suffix [lo:]: its views, made once per suffix
                w = [p[lo:] for p in ws]
                vw = views[lo] = (
                    w, [t.transpose(1, 2) for t in w[:-1]],
                    [b[lo:].unsqueeze(1) for b in bs[:-1]], bs[nl - 1][lo:].unsqueeze(2),
                    minus_one[lo:], [p[lo:] for p in params],
                    [v[lo:] for v in st1], [v[lo:] for v in st2],
                    None if t_step is None else t_step[lo:],
                    [None if o is None else o[lo:] for o in g_offs])
            w, w_t, b_u, b_last, m1, ps, v1s, v2s, tt_s, offs = vw
            y = ys_u[s, lo:]  # [n, 1, B]
            hs = [xs_t[s, lo:]]
            for i in range(nl - 1):
                hs.append(torch.relu_(torch.baddbmm(b_u[i], hs[-1], w_t[i])))
            zt = torch.baddbmm(b_last, w[nl - 1], hs[-1].transpose(1, 2))
            logp = torch.log_softmax(zt, dim=1)  # [n, K, B]
            torch.gather(logp, 1, y, out=lp_u[s, lo:])
            # backward of mean cross-entropy over real samples: (softmax - onehot) * m / count
            dz = logp.exp_()
            dz.scatter_add_(1, y, m1)
            dz.mul_(msc_u[s, lo:])
            gw: list[torch.Tensor] = [torch.empty(0)] * nl
            gb: list[torch.Tensor] = [torch.empty(0)] * nl
            gw[nl - 1], gb[nl - 1] = torch.bmm(dz, hs[nl - 1]), dz.sum(2)
            dz = dz.transpose(1, 2)  # [n, B, K]
            for i in range(nl - 2, -1, -1):
                dz = torch.ops.aten.threshold_backward(torch.bmm(dz, w[i + 1]), hs[i + 1], 0)
                gw[i] = torch.bmm(dz.transpose(1, 2), hs[i])
                gb[i] = dz.sum(1)
            grads = gw + gb
            if plain:  # as p.sub_(g.mul_(lr)) per tensor, bit for bit
                torch._foreach_mul_(grads, lr)
                torch._foreach_sub_(ps, grads)
                continue
            if tt_s is not None:
                tt_s += 1.0
            for j, g in enumerate(grads):
                p = ps[j]
                if hook is not None:  # the strategy's gradient correction, e.g. mu (w - w_g)
                    off = offs[j]
                    g = g + (hook.correction(p, g_params[j]) if off is None
                             else hook.correction(p, g_params[j], off))
                if sgd and mu > 0:
                    p.sub_(v1s[j].mul_(mu).add_(g) * lr)
                elif sgd:
                    p.sub_(g.mul_(lr))
                else:  # Adam, as torch.optim.Adam with default betas and eps
                    v1, v2 = v1s[j], v2s[j]
                    v1.mul_(b1).add_((1 - b1) * g)
                    v2.mul_(b2).add_((1 - b2) * g * g)
                    tt = tt_s.clamp(min=1).view((-1,) + (1,) * (p.dim() - 1))  # type: ignore[union-attr]
                    bc1 = 1 - b1 ** tt
                    bc2 = 1 - b2 ** tt
                    p.sub_(lr / bc1 * v1 / (v2.sqrt() / bc2.sqrt() + eps))
        flat = flat_t.cpu().numpy()
        # each sample's loss in float64 and summed there, as the sequential path does
        per = (logp_y.neg_().mul_(ms_t)).double()
        tot, tot_sq = per.sum((0, 2)), (per * per).sum((0, 2))
        counts = ms.sum(axis=(0, 2)).clip(min=1)
        inv = np.empty_like(order)
        inv[order] = np.arange(c)
        return flat[inv], (tot.cpu().numpy() / counts)[inv], (tot_sq.cpu().numpy() / counts)[inv]
