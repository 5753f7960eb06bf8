"""Transformer workload: a resident Llama (random init from a config) trained per client job.

**Global state.** One flat float32 vector over every tensor that some workload of the scenario
trains, in a fixed order (:class:`StateLayout`):

* LoRA adapters at ``r_max`` (``A`` [r_max, d_in], ``B`` [d_out, r_max] per adapted layer), when
  a workload trains adapters (``lora``, or ``split`` with ``split_train: lora``);
* base tensors: all of them when ``full`` or ``split`` with ``split_train: full`` is possible,
  else the top ``max(partial_blocks)`` decoder blocks when ``partial`` is, else none.

Everything else (the embeddings and lower blocks of a LoRA run, say) is frozen, resident on
every host, identical everywhere (built from the scenario seed) and never travels.

**Jobs** (``JobBatch.assignment``: kind, rank, blocks, cut):

* ``lora`` (rank r): the adapters, truncated to rank r (HetLoRA, see ``hetlora.py``);
* ``partial`` (blocks k): the base tensors of the top k blocks; backward stops below them;
* ``split`` (cut c): as ``lora`` (rank r) or ``full`` but cut at block c (``split.py``);
* ``full``: every base tensor of the state.

**Aggregation.** A client's delta covers the tensors it trained, with a per-coordinate mask, so
each coordinate is averaged over the clients that trained it; an adapter's components beyond a
client's rank are inside its mask with value 0 (HetLoRA's zero padding). Compression
(``compression.py``) applies to what the device uploads: the trained components within its
rank, for split clients only the device's half.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from simulator import InputError
from simulator.aggregation import Partial
from simulator.core import rng as rngmod
from simulator.core.jobs import JobBatch
from simulator.workloads import lora as L
from simulator.workloads.compression import CompressionSpec, Compressor
from simulator.workloads.mlp import batch_plan
from simulator.workloads.partial import param_block, set_trainable, trains_block
from simulator.workloads.split import SplitBoundary

CACHE_BYTES = 128 * 2**20  # resident client shards per host
EVAL_BATCH = 64


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "adam"
    momentum: float = 0.0


@dataclass(frozen=True)
class StateConfig:
    """What the global state holds: adapters (``lora`` spec) and which base tensors."""

    lora: L.LoraSpec | None = None
    base: str = "none"  # none | top | all | adapted (the adapted layers' weights: FLoRA)
    base_top_blocks: int = 0  # with base == "top"
    split_train: str = "lora"  # what a split client trains: lora | full


@dataclass(frozen=True)
class Slot:
    name: str  # e.g. "model.layers.1.mlp.down_proj.weight" or "...q_proj.lora_A"
    param: nn.Parameter
    start: int
    stop: int
    block: int  # -1 embeddings, 0..L-1 decoder blocks, L final norm and lm_head
    pair: int = -1  # index into the adapter pairs for lora_A / lora_B, else -1
    side: str = ""  # "A", "B" or "" for base tensors


@dataclass
class ClientResult:
    values: np.ndarray  # float64 [P] the client's state after training
    trained: np.ndarray  # float64 [P] 1 where the client trained (aggregation mask)
    sent: np.ndarray  # bool [P] coordinates the device uploads
    n: int
    loss: float
    loss_sq: float
    stats: dict[str, float] = field(default_factory=dict)


def build_llama(config: dict[str, Any], seed: int) -> Any:
    """LlamaForCausalLM with random weights from ``config`` (canonical keys), seeded."""
    from transformers import LlamaConfig, LlamaForCausalLM

    kw = {k: v for k, v in config.items() if v is not None and k not in
          ("model_type", "architectures", "transformers_version", "torch_dtype", "dtype")}
    torch.manual_seed(rngmod.int_seed(seed, rngmod.INIT))
    model = LlamaForCausalLM(LlamaConfig(**kw))
    model.eval()  # no dropout in the base; LoRA dropout is seeded per client
    return model


class StateLayout:
    """The ordered tensors of the global state and their offsets in the flat vector."""

    def __init__(self, model: nn.Module, pairs: list[L.AdapterPair], state: StateConfig,
                 n_layers: int) -> None:
        self.slots: list[Slot] = []
        off = 0

        def add(name: str, p: nn.Parameter, block: int, pair: int = -1, side: str = "") -> None:
            nonlocal off
            self.slots.append(Slot(name, p, off, off + p.numel(), block, pair, side))
            off += p.numel()

        if state.lora is not None:
            for i, pr in enumerate(pairs):
                add(f"{pr.module}.lora_A", pr.a, pr.block, i, "A")
                add(f"{pr.module}.lora_B", pr.b, pr.block, i, "B")
        if state.base == "adapted":  # FLoRA merges the clients' products into these
            for pr in pairs:
                add(f"{pr.module}.weight", pr.base, pr.block)
        elif state.base != "none":
            seen: set[int] = set()
            for name, p in model.named_parameters():
                if "lora_" in name or id(p) in seen:
                    continue
                seen.add(id(p))
                clean = name.split("base_model.model.", 1)[-1].replace(".base_layer", "")
                blk = param_block(clean, n_layers)
                if state.base == "all" or 0 <= blk < n_layers and trains_block(
                        blk, n_layers, state.base_top_blocks):
                    add(clean, p, blk)
        self.size = off
        self.params = [s.param for s in self.slots]

    def flat(self) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([p.detach().reshape(-1) for p in self.params]).numpy().copy()

    def load(self, flat: torch.Tensor) -> None:
        with torch.no_grad():
            for s in self.slots:
                s.param.copy_(flat[s.start:s.stop].view_as(s.param))


class LLMWorkload:
    """The transformer workload (interface of ``simulator.workloads``); see the module docstring."""

    def __init__(self, config: dict[str, Any], dataset: Any, train: TrainConfig, state: StateConfig,
                 seed: int, compression: CompressionSpec | None = None,
                 wire_bytes: float = 4.0, update_hook: Any = None) -> None:
        self.dataset = dataset
        self.update_hook = update_hook  # DP clipping/noise (simulator.privacy); None when off
        self.train_cfg = train
        self.state = state
        self.seed = seed
        self.wire_bytes = wire_bytes  # bytes per activation element on the wire (dtype_bytes)
        self.compressor = Compressor(compression or CompressionSpec())
        base = build_llama(config, seed)
        self.n_layers = int(base.config.num_hidden_layers)
        self.hidden = int(base.config.hidden_size)
        self.vocab = int(base.config.vocab_size)
        if state.lora is not None:
            self.model = L.attach_lora(base, state.lora)  # adapter init continues the seeded RNG
            self.pairs = L.adapter_pairs(self.model)
        else:
            self.model, self.pairs = base, []
        self.model.eval()
        self.layout = StateLayout(self.model, self.pairs, state, self.n_layers)
        self.n_params = self.layout.size
        self._init = self.layout.flat()
        self._named = [(n.split("base_model.model.", 1)[-1].replace(".base_layer", ""), p)
                       for n, p in self.model.named_parameters()]
        self._rank_masks: dict[int, np.ndarray] = {}
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._cache_bytes = 0
        self.last_stats: dict[int, dict[str, float]] = {}
        # batched LoRA clients (lora_batched.py) when executor.batched_lora; set by the builder
        self.batched = False
        # robust rules read every individual update (strategy declares needs:client_updates);
        # set by the builder
        self.keep_updates = False

    # --- state ------------------------------------------------------------------------------
    def initial_state(self) -> np.ndarray:
        return self._init.copy()

    def _load(self, flat: np.ndarray) -> None:
        self.layout.load(torch.from_numpy(np.ascontiguousarray(flat, np.float32)))

    def within_rank(self, rank: int) -> np.ndarray:
        """bool [P]: coordinates a rank-``rank`` client holds (all non-adapter coordinates)."""
        hit = self._rank_masks.get(rank)
        if hit is None:
            hit = np.ones(self.n_params, bool)
            for s in self.layout.slots:
                if s.side:
                    m = np.zeros(tuple(s.param.shape), bool)
                    if s.side == "A":
                        m[:rank] = True
                    else:
                        m[:, :rank] = True
                    hit[s.start:s.stop] = m.reshape(-1)
            self._rank_masks[rank] = hit
        return hit

    # --- jobs ---------------------------------------------------------------------------------
    def _job(self, kind: str, rank: int, blocks: int, cut: int) -> tuple[list[bool], int, int]:
        """(trained flag per slot, rank, cut or -1) for one assignment row."""
        st, slots = self.state, self.layout.slots
        r_max = st.lora.r_max if st.lora is not None else 0
        rank = min(int(rank), r_max) if rank and rank > 0 else r_max
        adapters = [bool(s.side) for s in slots]
        base = [not s.side for s in slots]
        if kind == "lora" or (kind == "split" and st.split_train == "lora"):
            flags = adapters
        elif kind == "partial":
            flags = [b and 0 <= s.block < self.n_layers and trains_block(s.block, self.n_layers,
                                                                         blocks)
                     for s, b in zip(slots, base, strict=True)]
        elif kind in ("full", "split"):
            flags = base
        else:
            raise InputError("model.workloads.order", f"workload {kind!r} cannot be trained for "
                             "a transformer in real mode (implemented: full, lora, partial, split;"
                             " use mode: analytic)")
        if not any(flags):
            raise InputError("model.workloads", f"a {kind!r} client has nothing to train in this "
                             "scenario's global state")
        return list(flags), rank, (int(cut) if kind == "split" else -1)

    def _client_data(self, cid: int) -> tuple[np.ndarray, np.ndarray]:
        hit = self._cache.get(cid)
        if hit is None:
            hit = self.dataset.client_data(cid)
            size = hit[0].nbytes + hit[1].nbytes
            if self._cache_bytes + size <= CACHE_BYTES:
                self._cache[cid] = hit
                self._cache_bytes += size
        return hit

    def train_client(self, global_flat: np.ndarray, cid: int, seed: int, kind: str,
                     rank: int = 0, blocks: int = 0, cut: int = 0) -> ClientResult:
        """Train one client from ``global_flat``; deterministic in (global, seed, assignment)."""
        flags, rank, cut = self._job(kind, rank, blocks, cut)
        self._load(global_flat)
        trained_params = {id(s.param) for s, f in zip(self.layout.slots, flags, strict=True) if f}
        truncate = self.state.lora is not None and rank < self.state.lora.r_max
        if truncate:  # a truncated copy of every adapter this client holds
            for pr in self.pairs:
                L.truncate_(pr, rank)
        set_trainable(self._named, lambda n: False)  # everything frozen, then the job's tensors
        params = [p for p in self.layout.params if id(p) in trained_params]
        for p in params:
            p.requires_grad_(True)
        t = self.train_cfg
        if t.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum)
        else:
            opt = torch.optim.Adam(params, lr=t.lr)
        x, y = self._client_data(cid)
        plan = batch_plan(len(y), t.epochs, t.batch_size, np.random.default_rng(int(seed)))
        torch.manual_seed(int(seed) & (2**63 - 1))
        boundary = SplitBoundary(self.model, cut) if cut >= 0 else None
        self.model.train()
        try:
            with ExitStack() as stack:
                if boundary is not None:
                    stack.enter_context(boundary)
                tot, tot_sq, count = self._steps(plan, torch.from_numpy(x), torch.from_numpy(y),
                                                 opt, boundary, rank if truncate else -1)
        finally:
            self.model.eval()
            for p in params:
                p.requires_grad_(False)
        trained = np.zeros(self.n_params)
        sent = np.zeros(self.n_params, bool)
        for s, f in zip(self.layout.slots, flags, strict=True):
            if f:
                trained[s.start:s.stop] = 1.0
                # a split device uploads only its half: embeddings and blocks below the cut
                sent[s.start:s.stop] = cut < 0 or s.block < cut
        sent &= self.within_rank(rank)
        stats: dict[str, float] = {"steps": float(len(plan))}
        if boundary is not None:  # b*s*h elements per step, at the wire's bytes per element
            stats["split_bytes_up"] = boundary.elements_up * self.wire_bytes
            stats["split_bytes_down"] = boundary.elements_down * self.wire_bytes
        return ClientResult(self.layout.flat().astype(np.float64), trained, sent, len(y),
                            tot / max(count, 1), tot_sq / max(count, 1), stats)

    def _steps(self, plan: np.ndarray, xt: torch.Tensor, yt: torch.Tensor,
               opt: torch.optim.Optimizer, boundary: SplitBoundary | None, rank: int
               ) -> tuple[float, float, int]:
        """Local optimizer steps; (sum of per-sequence losses, of their squares, sequences)."""
        tot = tot_sq = 0.0
        count = 0
        for row in plan:
            idx = torch.from_numpy(row[row >= 0])
            opt.zero_grad(set_to_none=True)
            logits = self.model(input_ids=xt[idx]).logits  # [b, s, V]
            per = nn.functional.cross_entropy(logits.transpose(1, 2), yt[idx],
                                              reduction="none").mean(1)  # [b]
            per.mean().backward()  # the server's backward when split
            if boundary is not None:
                boundary.device_backward()
            if rank >= 0:  # a truncated copy: components rank: stay zero
                for pr in self.pairs:
                    L.mask_rank_grads_(pr, rank)
            opt.step()
            d = per.detach().double()
            tot += float(d.sum())
            tot_sq += float((d * d).sum())
            count += len(idx)
        return tot, tot_sq, count

    def train(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        t0 = time.perf_counter()
        part = Partial.empty(self.n_params)
        g64 = global_flat.astype(np.float64)
        a = jobs.assignment
        n = len(jobs)
        kinds = a.get("kind", np.full(n, "full", dtype=object))
        cols = {k: np.asarray(a.get(k, np.zeros(n)), np.int64) for k in ("rank", "blocks", "cut")}
        self.last_stats = {}
        batched = self._train_batched(global_flat, jobs, kinds, cols["rank"])
        kept: list[np.ndarray] = []  # individual updates, for rules that read each one
        for j, cid in enumerate(jobs.client_ids):
            cid = int(cid)
            res = batched[j] if batched else self.train_client(
                global_flat, cid, int(jobs.seeds[j]), str(kinds[j]), int(cols["rank"][j]),
                int(cols["blocks"][j]), int(cols["cut"][j]))
            delta = np.where(res.trained > 0, res.values - g64, 0.0)
            weight = float(res.n)
            if self.update_hook is not None:  # DP: clip (and noise) before it leaves the device
                delta, weight = self.update_hook(jobs.round, cid, delta, weight, mask=res.trained)
            up, nbytes = self.compressor.roundtrip(cid, jobs.round, delta[res.sent])
            delta[res.sent] = up
            res.stats["upload_bytes"] = nbytes
            self.last_stats[cid] = res.stats
            part.add_client(cid, delta, weight, res.n, res.loss, res.loss_sq, mask=res.trained)
            if self.keep_updates:
                kept.append(delta * res.trained)
        if self.keep_updates:
            part.updates = np.stack(kept) if kept else np.zeros((0, self.n_params))
        part.wall_s = time.perf_counter() - t0
        return part

    def _train_batched(self, global_flat: np.ndarray, jobs: JobBatch, kinds: np.ndarray,
                       ranks: np.ndarray) -> list[ClientResult]:
        """Every job's result from batched LoRA passes (``lora_batched``), or [] when the jobs
        cannot be batched (or ``executor.batched_lora`` is off): then they train per client."""
        from simulator.workloads import lora_batched as LB

        if not self.batched or not LB.can_batch(self, kinds):
            return []
        r_max = self.state.lora.r_max if self.state.lora is not None else 0
        rk = [min(int(r), r_max) if r > 0 else r_max for r in ranks]
        got = LB.train_clients(self, global_flat, [int(c) for c in jobs.client_ids],
                               [int(x) for x in jobs.seeds], rk)
        return [ClientResult(res.values, np.ones(self.n_params), self.within_rank(r).copy(),
                             res.n, res.loss, res.loss_sq, {"steps": float(res.steps)})
                for res, r in zip(got, rk, strict=True)]

    # --- evaluation -----------------------------------------------------------------------------
    def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                         steps: int) -> np.ndarray:
        """Each client's held-out token loss and accuracy, before and after ``steps`` fine-tuning
        steps of the global state's tensors (adapters with LoRA, else its base tensors); see
        simulator/workloads/client_eval.py."""
        from simulator.workloads import client_eval as CE

        def score(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
            tot = correct = 0.0
            count = 0
            with torch.no_grad():
                for s in range(0, len(y), EVAL_BATCH):
                    yt = torch.from_numpy(y[s:s + EVAL_BATCH])
                    logits = self.model(input_ids=torch.from_numpy(x[s:s + EVAL_BATCH])).logits
                    tot += float(nn.functional.cross_entropy(logits.transpose(1, 2), yt,
                                                             reduction="sum"))
                    correct += float((logits.argmax(-1) == yt).sum())
                    count += yt.numel()
            return tot / max(count, 1), correct / max(count, 1)

        try:
            flags, _, _ = self._job("lora" if self.state.lora is not None else "full", 0, 0, 0)
        except InputError:  # nothing trainable in the global state: no personalisation
            flags, steps = [False] * len(self.layout.slots), 0
        params = [s.param for s, f in zip(self.layout.slots, flags, strict=True) if f]

        def tune(x: np.ndarray, y: np.ndarray, plan: np.ndarray, seed: int) -> None:
            xt, yt = torch.from_numpy(x), torch.from_numpy(y)

            def loss_of(idx: torch.Tensor) -> torch.Tensor:
                logits = self.model(input_ids=xt[idx]).logits
                return nn.functional.cross_entropy(logits.transpose(1, 2), yt[idx])

            set_trainable(self._named, lambda n: False)
            for p in params:
                p.requires_grad_(True)
            self.model.train()
            try:
                CE.run_steps(params, plan, self.train_cfg, loss_of)
            finally:
                self.model.eval()
                for p in params:
                    p.requires_grad_(False)
                    p.grad = None

        return CE.evaluate_clients(self.dataset, flat, client_ids, seeds, steps,
                                   self.train_cfg.batch_size, self._load, score, tune)

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
        """(next-token accuracy, mean cross-entropy per token) on the held-out sequences."""
        self._load(flat)
        x, y = self.dataset.test_data()
        tot = correct = 0.0
        count = 0
        with torch.no_grad():
            for s in range(0, len(y), EVAL_BATCH):
                xt = torch.from_numpy(x[s:s + EVAL_BATCH])
                yt = torch.from_numpy(y[s:s + EVAL_BATCH])
                logits = self.model(input_ids=xt).logits
                tot += float(nn.functional.cross_entropy(logits.transpose(1, 2), yt,
                                                         reduction="sum"))
                correct += float((logits.argmax(-1) == yt).sum())
                count += yt.numel()
        return correct / max(count, 1), tot / max(count, 1)
