"""CapabilityPlanner: give each selected device the most capable transformer workload it can run.

Decision procedure (docs/large-models.md). ``model.workloads.order`` lists workload kinds from
most to least preferred, e.g. ``[lora, partial, split]``. Each kind expands into options, most
capable first: LoRA ranks descending, partial top-k blocks descending, width rates descending,
split cuts ascending. An option is *admissible* for a client when its peak memory fits the
device's usable memory and, with ``require_deadline``, its estimated time (download + compute +
upload, as :func:`simulator.core.cost.estimate`) is within ``scenario.deadline_s``. Walking the
kinds in order, a client takes the first admissible option of the first kind that has one; for
``split`` (a kind registered with ``pick:fastest``) it takes the admissible cut with the smallest
time instead. A client for which only the deadline fails gets the fastest option that fits in
memory (``meets_deadline`` False; the round resolver then calls it a straggler); a client with no
option that fits in memory gets ``none`` and is infeasible (``out_of_memory``).

Each kind's options come from its ``WORKLOADS`` entry (simulator/core/registry.py; the built-ins
in simulator/planning/options.py).

Costs are closed-form (planning.llm_config / llm_cost / memory): nothing here imports torch.
Work per client per round: n_samples sequences of ``model.seq_len`` tokens, x epochs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from simulator.config.llm import ModelSpec, closed_form_spec
from simulator.core.cost import BITS_PER_BYTE, TaskCost
from simulator.core.registry import WORKLOADS, declared
from simulator.data.sizes import SizesOnlyDataset, analytic_dataset  # noqa: F401  (re-exported)
from simulator.fleet.population import Population
from simulator.planning import llm_cost as C
from simulator.planning.base import Plan
from simulator.planning.options import DEFAULT_TARGETS, Option, option_context  # noqa: F401
from simulator.planning.precision import precisions

CHUNK = 16384  # clients planned at once


def build_options(spec: ModelSpec, sc: Any) -> list[Option]:
    """All options of the scenario's workload kinds, grouped by kind in ``order`` (each kind's
    options from its ``WORKLOADS`` entry, simulator/planning/options.py)."""
    ctx = option_context(spec, sc)
    out: list[Option] = []
    for kind in sc.model.workloads.order:
        out.extend(o if o.kind == kind else replace(o, kind=kind)
                   for o in WORKLOADS.load(kind)(ctx))
    return out


class CapabilityPlanner:
    """Plans transformer workloads per client; see the module docstring for the procedure."""

    def __init__(self, scenario: Any, population: Population | None = None,
                 spec: ModelSpec | None = None) -> None:
        self.sc = scenario
        self.spec = spec or closed_form_spec(scenario.model)
        w = scenario.model.workloads
        self.options = build_options(self.spec, scenario)
        self.kinds = np.array([o.kind for o in self.options], dtype=object)
        self.mem = np.array([o.memory_bytes for o in self.options])
        self.fpt = np.array([o.flops_per_token for o in self.options])
        self.srv = np.array([o.server_flops_per_token for o in self.options])
        self.down = np.array([o.download_bytes for o in self.options])
        self.up = np.array([o.upload_bytes for o in self.options])
        self.step = np.array([o.step_bytes for o in self.options])
        self.ops = np.array([o.ops_per_step for o in self.options])
        self.attrs = {name: np.array([getattr(o, name) for o in self.options], dtype=dt)
                      for name, dt in (("rank", np.int64), ("blocks", np.int64),
                                       ("cut", np.int64), ("width", np.float64),
                                       ("trainable_params", np.float64))}
        self.order = w.order
        # base storage per option, a clients.parquet column when the scenario sets one
        self.base_quant = np.array([o.base_quant for o in self.options], dtype=object)
        self.says_quant = precisions(scenario).chooses_base
        self.density = np.array([o.density for o in self.options], np.float64)
        self.says_density = w.pruning.method != "none"
        # PruneFL-like schedule: each round only the options at that round's density (lora and
        # full; the other kinds are not pruned)
        self.prune_schedule = w.pruning if w.pruning.schedule == "prunefl" else None
        self.pruned_kind = np.isin(self.kinds, ["lora", "full"])
        self._allow: np.ndarray | None = None
        # Kinds declaring pick:fastest take their admissible option with the least time.
        self.fastest = {k for k in w.order if "fastest" in declared(WORKLOADS.entry(k), "pick")}
        self.require_deadline = w.require_deadline
        self.server_rate = w.split_server_flops_per_s
        self._rules_init(scenario)

    def _rules_init(self, sc: Any) -> None:
        """Per-class rules (planning/rules.py): per mix entry the rule index (-1: none) and
        per rule the options it allows; a rule that allows no option is refused here."""
        from simulator import InputError
        from simulator.planning.rules import class_rules, describe, has_rules, matches

        self.has_rules = has_rules(sc)
        self.rules: list[Any] = []
        self.rule_allows: list[np.ndarray] = []
        idx = []
        for hit in class_rules(sc) if self.has_rules else []:
            if hit is None:
                idx.append(-1)
                continue
            where, rule = hit
            if rule not in self.rules:
                allow = np.array([matches(rule, o) for o in self.options], dtype=bool)
                if not allow.any():
                    have = ", ".join(dict.fromkeys(describe(o) for o in self.options))
                    raise InputError(where, f"'{rule.label()}' matches no workload option of "
                                            f"this model (options: {have})")
                self.rules.append(rule)
                self.rule_allows.append(allow)
            idx.append(self.rules.index(rule))
        self.rule_of_entry = np.array(idx, np.int64)

    def option_costs(self, ids: np.ndarray, population: Population
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per (option, client): download, upload, equivalent FLOPs, waiting s, total s.

        A split client waits for the server (its share ``split_server_flops_per_s``) and one
        round trip per step; that wait is charged as compute time (FLOPs at the client's own
        rate) so :func:`simulator.core.cost.estimate` and the round resolver see the true duration.
        ``total`` repeats estimate's arithmetic in the same order on [opt, n] arrays, so it equals
        ``estimate(...).total_s`` of the chosen option bit for bit.
        """
        sc, p = self.sc, population
        seqs = p.n_samples[ids].astype(np.float64)
        tokens = seqs * sc.model.seq_len * sc.training.epochs  # [n]
        steps = C.steps_per_round(seqs, sc.training.batch_size, sc.training.epochs)
        fps, lat = p.train_flops_per_s[ids], p.latency_s[ids].astype(np.float64)
        split = self.step > 0
        wait = (self.srv[:, None] * tokens / self.server_rate
                + np.where(split[:, None], steps * lat, 0.0))  # [opt, n]
        flops = self.fpt[:, None] * tokens + wait * fps
        down = self.down[:, None] + self.step[:, None] * steps
        up = self.up[:, None] + self.step[:, None] * steps
        bits = BITS_PER_BYTE
        comp = flops / fps  # + per-step and per-operation overheads, as estimate adds them
        if p.profiles:  # (a hand-built population without profiles has none)
            comp = comp + np.broadcast_to(steps, comp.shape) * p.per_profile(
                lambda q: q.compute.step_overhead_s, ids)
            comp = comp + (self.ops[:, None] * steps) * p.per_profile(
                lambda q: q.compute.op_overhead_s, ids)
        total = ((lat + down * bits / p.downlink_bits_per_s[ids]) + comp
                 + (lat + up * bits / p.uplink_bits_per_s[ids]))
        return down, up, flops, wait, total

    def choose(self, fits: np.ndarray, in_time: np.ndarray, total: np.ndarray) -> np.ndarray:
        """Option index per client (-1: nothing fits in memory); arrays are [opt, n]."""
        n = fits.shape[1]
        ok = fits & in_time if self.require_deadline else fits
        chosen = np.full(n, -1, np.int64)
        for kind in self.order:
            rows = np.flatnonzero(self.kinds == kind)
            if rows.size == 0:
                continue
            todo = chosen < 0
            sub = ok[rows][:, todo]
            has = sub.any(axis=0)
            if kind in self.fastest:  # e.g. split: the cut with the least client time
                pick = np.argmin(np.where(sub, total[rows][:, todo], np.inf), axis=0)
            else:  # the most capable option: options are listed most capable first
                pick = np.argmax(sub, axis=0)
            idx = np.flatnonzero(todo)[has]
            chosen[idx] = rows[pick[has]]
        late = (chosen < 0) & fits.any(axis=0)  # fits in memory, misses the deadline everywhere
        if late.any():
            chosen[late] = np.argmin(np.where(fits[:, late], total[:, late], np.inf), axis=0)
        return chosen

    def _apply_rules(self, ids: np.ndarray, population: Population, fits: np.ndarray,
                     in_time: np.ndarray, total: np.ndarray, chosen: np.ndarray
                     ) -> dict[str, np.ndarray]:
        """Restrict ruled clients to their rule's options (``chosen`` updated in place); the
        clients.parquet columns saying what happened (none without rules)."""
        if not self.has_rules:
            return {}
        n = len(ids)
        rule_of = self.rule_of_entry[population.profile_idx[ids]]
        label = np.full(n, "", dtype=object)
        honoured = np.ones(n, bool)
        note = np.full(n, "", dtype=object)
        for r, (rule, allow) in enumerate(zip(self.rules, self.rule_allows, strict=True)):
            cl = np.flatnonzero(rule_of == r)
            if cl.size == 0:
                continue
            label[cl] = rule.label()
            sub = self.choose(fits[:, cl] & allow[:, None], in_time[:, cl], total[:, cl])
            ok = sub >= 0
            chosen[cl[ok]] = sub[ok]
            bad = cl[~ok]
            honoured[bad] = False
            if bad.size:
                need = float(self.mem[allow].min())
                dev = population.memory_bytes[ids[bad]]
                took = "no workload (strict)" if rule.strict else "the planner's choice instead"
                if rule.strict:
                    chosen[bad] = -1
                note[bad] = [f"rule not honoured: {rule.label()} needs {need / 1e9:.2f} GB, "
                             f"the device has {d / 1e9:.2f} GB; {took}" for d in dev]
            late = cl[ok][~in_time[chosen[cl[ok]], cl[ok]]]
            note[late] = "rule honoured; misses the deadline"
        return {"workload_rule": label, "rule_honoured": honoured, "workload_note": note}

    def plan(self, round: int, ids: np.ndarray, population: Population) -> Plan:
        """The workload of each client in ``ids`` (in chunks: memory stays ~O(options x CHUNK))."""
        ids = np.asarray(ids, np.int64)
        if self.prune_schedule is not None:
            from simulator.planning.pruning import density_at

            d = density_at(self.prune_schedule, min(int(round), self.sc.rounds - 1))
            self._allow = (self.density == d) | ~self.pruned_kind
        if len(ids) <= CHUNK:
            return self._plan(ids, population)
        parts = [self._plan(ids[i:i + CHUNK], population) for i in range(0, len(ids), CHUNK)]
        def cat(get: Any) -> np.ndarray:
            return np.concatenate([get(q) for q in parts])

        cost = TaskCost(*(cat(lambda q, f=f: getattr(q.cost, f))
                          for f in ("download_bytes", "upload_bytes", "train_flops",
                                    "memory_bytes", "train_steps", "train_ops")))
        cols = {k: cat(lambda q, k=k: q.columns[k]) for k in parts[0].columns}
        return Plan(cost, cat(lambda q: q.infeasible), cat(lambda q: q.kind), cols)

    def _plan(self, ids: np.ndarray, population: Population) -> Plan:
        n = len(ids)
        down, up, flops, wait, total = self.option_costs(ids, population)
        fits = self.mem[:, None] <= population.memory_bytes[ids][None, :]
        if self._allow is not None:
            fits &= self._allow[:, None]
        dl = self.sc.deadline_s
        in_time = total <= dl if dl is not None else np.ones_like(fits)
        chosen = self.choose(fits, in_time, total)
        extra = self._apply_rules(ids, population, fits, in_time, total, chosen)
        none = chosen < 0
        j = np.where(none, 0, chosen)
        cols = np.arange(n)

        def pick(a: np.ndarray) -> np.ndarray:
            return np.where(none, 0.0, a[j, cols])

        def attr(name: str) -> np.ndarray:
            a = self.attrs[name][j]
            return np.where(none, 1.0 if name == "width" else 0, a).astype(a.dtype)

        mem = np.where(none, 0.0, self.mem[j])
        sc = self.sc
        steps = C.steps_per_round(population.n_samples[ids].astype(np.float64),
                                  sc.training.batch_size, sc.training.epochs)
        cost = TaskCost(download_bytes=pick(down), upload_bytes=pick(up),
                        train_flops=pick(flops), memory_bytes=mem,
                        train_steps=np.where(none, 0.0, steps),
                        train_ops=pick(self.ops[:, None] * steps))
        columns = {
            "rank": attr("rank"),
            "blocks": attr("blocks"),
            "cut": attr("cut"),
            "width": attr("width"),
            "memory_bytes": mem,
            "trainable_params": attr("trainable_params"),
            "server_wait_s": pick(wait),
            "meets_deadline": ~none & np.where(none, False, in_time[j, cols]),
            **extra,
        }
        if self.says_quant:  # what the device stores its frozen base in (none: not quantized)
            columns["base_quantization"] = np.where(none, "none", self.base_quant[j]).astype(object)
        if self.says_density:  # share of block linear weights kept (pruning)
            columns["density"] = np.where(none, 1.0, self.density[j])
        kind = np.where(none, "none", self.kinds[j]).astype(object)
        return Plan(cost, none, kind, columns)
