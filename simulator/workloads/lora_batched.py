"""Batched LoRA clients: K clients that share one frozen base model trained in one pass.

The per-client path (``LLMWorkload.train_client``) loads a client's adapters into the resident
peft model and runs its optimizer steps alone. Here the K clients of a group run together:

* the frozen base runs once per step on the K clients' mini-batches stacked along the batch
  dimension ([K*b, seq]; attention never mixes sequences, so clients never see each other);
* every adapted linear layer adds each client's own adapter through a forward hook,
  ``scaling * (x_k A_k^T) B_k^T`` for the rows of client k, as two ``torch.bmm`` over
  [K, b*seq, d] (peft's own adapters are switched off with ``disable_adapter``);
* each client's adapters are rows of leaf tensors ``A`` [K, r_g, d_in] and ``B``
  [K, d_out, r_g] (``r_g`` the group's largest rank; ``train_clients`` groups clients by rank,
  about ``GROUP_TOKENS`` tokens per step); a client of rank r < r_g has rows / columns ``r:``
  zero (a truncated copy, as the per-client path; their gradients are exact zeros), so ranks
  may differ within one group;
* the loss is the sum of the clients' own mean losses, so one backward gives every client the
  gradient of its own loss and only for its adapters (the base has ``requires_grad`` off);
* SGD and Adam are applied per client, elementwise on one buffer [K, N] that holds every
  leaf (the leaves are views of it, their gradients views of one gradient buffer, accumulated
  in place), so a step is a few ops whatever the number of layers, with the arithmetic of
  ``torch.optim.SGD`` / ``torch.optim.Adam`` (default betas and eps) for one client.
  Clients are ordered by step count, so those still training at step s are a prefix of the
  group; finished clients are neither computed nor updated.

Each client follows the trajectory it follows alone, up to float rounding (the base's matmuls
run on a larger batch); ``tests/test_lora_batched.py`` checks the final adapters against
per-client peft training within ``TOLERANCE``. Used for ``lora`` jobs (no split, no dropout,
an adapter-only global state) when ``executor.batched_lora`` is true (opt-in: float rounding
changes a run's digits); anything else trains per client.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from simulator.workloads.mlp import batch_plan

# clients per batched pass on a CPU: about GROUP_TOKENS tokens, so activations stay in cache
# (measured: 8 clients of 8 x 64 tokens beat 4-32 on the hidden-64 Llama; 16-32 clients of
# 8 x 16 tokens beat 4-8 on a hidden-32 one)
GROUP_TOKENS = 4096
MIN_GROUP, MAX_GROUP = 4, 64
TOLERANCE = 2e-5  # max |batched - per-client| of the final adapters (float32 rounding)


@dataclass
class BatchedResult:
    values: np.ndarray  # float64 [P] state after training
    n: int
    loss: float
    loss_sq: float
    steps: int


def group_size(batch_size: int, seq_len: int) -> int:
    """Clients per batched pass: about ``GROUP_TOKENS`` tokens per step."""
    return int(min(MAX_GROUP, max(MIN_GROUP, GROUP_TOKENS // max(1, batch_size * seq_len))))


def can_batch(workload: Any, kinds: np.ndarray) -> bool:
    """True when every job is a plain LoRA client and the state holds only adapters."""
    st = workload.state
    if st.lora is None or st.lora.dropout > 0 or st.base != "none":
        return False
    if workload.train_cfg.optimizer not in ("sgd", "adam"):
        return False
    if not all(s.side for s in workload.layout.slots):
        return False
    return bool(len(kinds)) and all(str(k) == "lora" for k in kinds)


class _Adapters:
    """The forward hooks: add each client's adapter to its rows of every adapted layer."""

    def __init__(self, workload: Any) -> None:
        self.pairs = workload.pairs
        self.scaling = float(workload.state.lora.scaling)
        self.a: list[torch.Tensor] = []  # per pair: [k, r, d_in] (views of the leaves)
        self.b: list[torch.Tensor] = []
        self.handles: list[Any] = []
        self.owner: torch.Tensor | None = None  # client of each sequence when batches differ
        mods = workload.__dict__.get("_lora_hooked")
        if mods is None:  # the adapted modules, found once per workload (a walk of the model)
            names = {p.module for p in self.pairs}
            index = {p.module: i for i, p in enumerate(self.pairs)}
            mods = workload.__dict__["_lora_hooked"] = [
                (index[short], module) for name, module in workload.model.named_modules()
                if (short := name.split("base_model.model.", 1)[-1]) in names]
        for i, module in mods:
            self.handles.append(module.register_forward_hook(self._hook(i)))

    def _hook(self, i: int) -> Any:
        def hook(module: nn.Module, inputs: tuple[Any, ...], output: torch.Tensor
                 ) -> torch.Tensor:
            a, b = self.a[i], self.b[i]
            x = inputs[0]
            if self.owner is None:  # every client has a full batch: [k, b*seq, d] views
                k = a.shape[0]
                xk = x.reshape(k, -1, a.shape[2])
                out = output.reshape(k, -1, b.shape[1])
            else:  # ragged: one adapter per sequence (rows gathered; grads index_add back)
                a, b = a.index_select(0, self.owner), b.index_select(0, self.owner)
                xk, out = x, output
            # output + scaling * (x A^T) B^T, the add and the scaling fused in one baddbmm
            u = torch.baddbmm(out, torch.bmm(xk, a.transpose(1, 2)), b.transpose(1, 2),
                              alpha=self.scaling)
            return u.reshape(output.shape)

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


class _Session:
    """The hooks installed and peft's adapters switched off, once for all groups of a call."""

    def __init__(self, workload: Any) -> None:
        self.w = workload
        self.hooks: _Adapters | None = None
        self.ctx: list[bool] = []  # each tuner layer's disable_adapters before the session
        self.was_disabled = False

    def __enter__(self) -> _Adapters:
        for p in self.w.layout.params:
            p.requires_grad_(False)
        # peft's adapters off, as ``PeftModel.disable_adapter()`` does (each tuner layer's
        # ``enable_adapters(False)``, restored after), without its per-call model status check
        # and module walks (~10 ms a call, 10% of a 16-client call of a small model)
        layers = _tuner_layers(self.w)
        self.ctx = [m.disable_adapters for m in layers]
        self.was_disabled = getattr(self.w.model, "_adapters_disabled", False)
        for m in layers:
            m.enable_adapters(False)
        self.w.model._adapters_disabled = True
        self.hooks = _Adapters(self.w)
        return self.hooks

    def __exit__(self, *exc: Any) -> None:
        if self.hooks is not None:
            self.hooks.close()
        for m, was in zip(_tuner_layers(self.w), self.ctx, strict=True):
            if not was:
                m.enable_adapters(True)
        self.w.model._adapters_disabled = self.was_disabled
        self.w.model.eval()


def _tuner_layers(w: Any) -> list[Any]:
    """peft's tuner layers (and modules-to-save wrappers) of the workload's model, found once."""
    mods = w.__dict__.get("_lora_tuner_layers")
    if mods is None:
        from peft.tuners.tuners_utils import BaseTunerLayer

        kinds: tuple[type, ...] = (BaseTunerLayer,)
        try:
            from peft.utils.other import AuxiliaryTrainingWrapper

            kinds += (AuxiliaryTrainingWrapper,)
        except ImportError:  # older peft: ModulesToSaveWrapper only
            from peft.utils.other import ModulesToSaveWrapper

            kinds += (ModulesToSaveWrapper,)
        mods = w.__dict__["_lora_tuner_layers"] = [m for m in w.model.modules()
                                                   if isinstance(m, kinds)]
    return mods


def train_clients(workload: Any, global_flat: np.ndarray, cids: list[int], seeds: list[int],
                  ranks: list[int]) -> list[BatchedResult]:
    """Train ``cids`` in groups of ``group_size`` clients (of one rank where possible: a group's
    adapters run at its largest rank); results in the order of ``cids``."""
    if not cids:
        return []
    seq_len = int(workload._client_data(cids[0])[0].shape[1])
    group = group_size(workload.train_cfg.batch_size, seq_len)
    order = sorted(range(len(cids)), key=lambda i: -int(ranks[i]))
    out: list[BatchedResult | None] = [None] * len(cids)
    with _Session(workload) as hooks:
        for s in range(0, len(order), group):
            part = order[s:s + group]
            got = train_group(workload, global_flat, [cids[i] for i in part],
                              [seeds[i] for i in part], [ranks[i] for i in part], hooks)
            for i, res in zip(part, got, strict=True):
                out[i] = res
    return [r for r in out if r is not None]


def train_group(workload: Any, global_flat: np.ndarray, cids: list[int], seeds: list[int],
                ranks: list[int], hooks: _Adapters | None = None) -> list[BatchedResult]:
    """Train ``cids`` (LoRA, ranks ``ranks``) together from ``global_flat``; results in order.
    ``hooks``: an open ``_Session``'s (``train_clients``); without, the group opens its own."""
    if hooks is None:
        with _Session(workload) as own:
            return train_group(workload, global_flat, cids, seeds, ranks, own)
    w = workload
    t = w.train_cfg
    k = len(cids)
    r_max = w.state.lora.r_max
    data = [w._client_data(c) for c in cids]
    plans = [batch_plan(len(y), t.epochs, t.batch_size, np.random.default_rng(int(sd)))
             for (_, y), sd in zip(data, seeds, strict=True)]
    n_steps = np.array([p.shape[0] for p in plans], np.int64)
    order = np.argsort(-n_steps, kind="stable")  # most steps first: active clients = a prefix
    steps = int(n_steps.max()) if k else 0
    # the leaves: every client's adapters at the group's largest rank r_g (components beyond it
    # are zero for every client of the group and cost nothing), truncated to its own rank; all
    # of them views of one buffer [k, N] (and their gradients of one [k, N]), so the optimizer
    # is a handful of elementwise ops on the first ``act`` rows, whatever the number of layers
    rank_o = torch.tensor([min(int(ranks[i]), r_max) if ranks[i] > 0 else r_max for i in order])
    r_g = int(rank_o.max()) if k else r_max
    keep = (torch.arange(r_g)[None, :] < rank_o[:, None]).float()  # [k, r_g]
    sizes = [r_g * pr.d_in for pr in w.pairs] + [pr.d_out * r_g for pr in w.pairs]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    par = torch.zeros(k, int(offs[-1]))
    grad = torch.zeros_like(par)
    g = torch.from_numpy(np.ascontiguousarray(global_flat, np.float32))
    n_pairs = len(w.pairs)
    a_leaves: list[torch.Tensor] = []
    b_leaves: list[torch.Tensor] = []
    for pr_i, pr in enumerate(w.pairs):
        sa, sb = _slots(w, pr_i)
        a0 = g[sa.start:sa.stop].view(r_max, pr.d_in)[:r_g]
        b0 = g[sb.start:sb.stop].view(pr.d_out, r_max)[:, :r_g]
        for leaves, j, v, shape in ((a_leaves, pr_i, a0.unsqueeze(0) * keep[:, :, None],
                                     (k, r_g, pr.d_in)),
                                    (b_leaves, n_pairs + pr_i, b0.unsqueeze(0) * keep[:, None, :],
                                     (k, pr.d_out, r_g))):
            view = par[:, offs[j]:offs[j + 1]].view(shape)
            view.copy_(v)
            leaf = view.detach().requires_grad_(True)  # a leaf sharing par's storage
            leaf.grad = grad[:, offs[j]:offs[j + 1]].view(shape)  # accumulated in place
            leaves.append(leaf)
    adam = t.optimizer == "adam"
    m1 = torch.zeros_like(par) if adam or t.momentum > 0 else None
    m2 = torch.zeros_like(par) if adam else None
    # every step's mini-batches, gathered up front: one index into all the group's sequences
    # (real rows only; ``owner`` when the active clients' batches differ in size)
    xs_all = torch.from_numpy(np.concatenate([data[i][0] for i in order]))
    ys_all = torch.from_numpy(np.concatenate([data[i][1] for i in order]))
    base = np.concatenate([[0], np.cumsum([len(data[i][1]) for i in order])])[:-1]
    pl = [plans[i] for i in order]
    batches: list[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor,
                        torch.Tensor]] = []
    for s in range(steps):
        act = int((n_steps > s).sum())
        rows = [pl[j][s][pl[j][s] >= 0] + base[j] for j in range(act)]
        lens = np.array([len(r) for r in rows], np.int64)
        who = torch.from_numpy(np.repeat(np.arange(act), lens))
        batches.append((act, torch.from_numpy(np.concatenate(rows)),
                        torch.from_numpy((1.0 / lens).astype(np.float32))[who],  # 1 / its batch
                        None if bool((lens == lens[0]).all()) else who, who,
                        torch.from_numpy(lens.astype(np.float64))))
    tot = torch.zeros(k, dtype=torch.float64)
    tot_sq = torch.zeros(k, dtype=torch.float64)
    count = torch.zeros(k, dtype=torch.float64)
    try:
        with torch.enable_grad():
            for s, (act, idx, wt, ragged, owner, cnt) in enumerate(batches):
                hooks.owner = ragged
                hooks.a = a_leaves if act == k else [p[:act] for p in a_leaves]
                hooks.b = b_leaves if act == k else [p[:act] for p in b_leaves]
                logits = w.model(input_ids=xs_all[idx]).logits
                per_row = nn.functional.cross_entropy(logits.transpose(1, 2), ys_all[idx],
                                                      reduction="none").mean(1)  # [rows]
                # the sum of the clients' own mean losses: one backward, each its own gradient
                with warnings.catch_warnings():  # the adapters are views of one flat buffer
                    warnings.filterwarnings("ignore", message="grad and param do not obey")
                    per_row.dot(wt).backward()
                with torch.no_grad():
                    d = per_row.double()
                    tot[:act] += torch.zeros(act, dtype=torch.float64).index_add_(0, owner, d)
                    tot_sq[:act] += torch.zeros(act, dtype=torch.float64).index_add_(
                        0, owner, d * d)
                    count[:act] += cnt
                    _step(par[:act], grad[:act], m1, m2, act, s + 1, t, adam)
                    grad[:act].zero_()
    finally:
        hooks.owner = None
        for p in a_leaves + b_leaves:
            p.grad = None
    out: list[BatchedResult | None] = [None] * k
    pn = par.numpy()
    for j, i in enumerate(order):
        vals = np.zeros(w.n_params, np.float64)  # components beyond r_g stay zero
        for pr_i, pr in enumerate(w.pairs):
            sa, sb = _slots(w, pr_i)
            vals[sa.start:sa.stop].reshape(r_max, pr.d_in)[:r_g] = \
                pn[j, offs[pr_i]:offs[pr_i + 1]].reshape(r_g, pr.d_in)
            vals[sb.start:sb.stop].reshape(pr.d_out, r_max)[:, :r_g] = \
                pn[j, offs[n_pairs + pr_i]:offs[n_pairs + pr_i + 1]].reshape(pr.d_out, r_g)
        c = max(float(count[j]), 1.0)
        out[i] = BatchedResult(vals, len(data[i][1]), float(tot[j]) / c,
                               float(tot_sq[j]) / c, int(n_steps[i]))
    return [r for r in out if r is not None]


def _slots(w: Any, pair: int) -> tuple[Any, Any]:
    cache = w.__dict__.setdefault("_pair_slots", {})
    hit = cache.get(pair)
    if hit is None:
        a = next(s for s in w.layout.slots if s.pair == pair and s.side == "A")
        b = next(s for s in w.layout.slots if s.pair == pair and s.side == "B")
        hit = cache[pair] = (a, b)
    return hit


def _step(par: torch.Tensor, grad: torch.Tensor, m1: torch.Tensor | None,
          m2: torch.Tensor | None, act: int, step: int, t: Any, adam: bool) -> None:
    """One optimizer step for the first ``act`` clients (rows of ``par`` / ``grad``, every
    leaf at once), with the single-tensor arithmetic of ``torch.optim.SGD`` / ``torch.optim.Adam``
    (default betas and eps) for one client.

    No mask is needed: a truncated client's components ``r:`` are exact zeros in ``A`` (rows)
    and ``B`` (columns), so their gradients are exact zeros (each is a product with the other
    factor's zero block) and SGD, momentum and Adam (``0 / (0 + eps)``) leave them at zero.
    """
    lr = float(t.lr)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    if adam:
        assert m1 is not None and m2 is not None
        ea, es = m1[:act], m2[:act]
        ea.lerp_(grad, 1 - beta1)
        es.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bc1 = 1 - beta1 ** step
        bc2_sqrt = (1 - beta2 ** step) ** 0.5
        denom = (es.sqrt() / bc2_sqrt).add_(eps)
        par.addcdiv_(ea, denom, value=-lr / bc1)
    elif t.momentum > 0:
        assert m1 is not None
        buf = m1[:act]
        if step == 1:
            buf.copy_(grad)
        else:
            buf.mul_(t.momentum).add_(grad)
        par.add_(buf, alpha=-lr)
    else:
        par.add_(grad, alpha=-lr)
