"""Per-class workload rules (numpy only): "phones train LoRA rank 4, laptops rank 16".

A rule comes from ``population.mix[i].workload`` (that mix entry's clients) or from the first
entry of ``model.workloads.rules`` whose ``classes`` name the entry's profile. It fixes what the
clients of a device class train (a :class:`~simulator.config.model.WorkloadChoice`: kind, LoRA
rank, trainable blocks, split cut, width); the capability planner
(simulator/planning/capability.py) restricts those clients to the options the rule matches and
still checks memory and the deadline:

* an allowed option fits the device's memory: the client takes the most capable one that also
  meets the deadline, else the fastest that fits (``meets_deadline`` False, as without rules);
* none fits: the rule is not honoured; the client takes the planner's normal choice (or no
  workload, ``out_of_memory``, with ``strict: true``), and clients.parquet says why.

With rules configured clients.parquet gains ``workload_rule`` (the rule, "" where none applies),
``rule_honoured`` and ``workload_note``; without rules its columns are unchanged.
"""

from __future__ import annotations

import math
from typing import Any

ANY_CLASS = "*"


def class_rules(sc: Any) -> list[tuple[str, Any] | None]:
    """Per ``population.mix`` entry: ``(where, rule)`` of the rule that applies, or None."""
    out: list[tuple[str, Any] | None] = []
    rules = sc.model.workloads.rules
    for i, m in enumerate(sc.population.mix):
        own = getattr(m, "workload", None)
        if own is not None:
            out.append((f"population.mix[{i}].workload", own))
            continue
        hit = next(((f"model.workloads.rules[{j}]", r) for j, r in enumerate(rules)
                    if m.profile in r.classes or ANY_CLASS in r.classes), None)
        out.append(hit)
    return out


def has_rules(sc: Any) -> bool:
    return bool(sc.model.workloads.rules) or any(
        getattr(m, "workload", None) is not None for m in sc.population.mix)


def rule_problems(sc: Any, planner: bool) -> list[str]:
    """One line per problem of the rules; ``planner``: the model kind plans per client (the
    capability planner), else rules cannot apply."""
    if not has_rules(sc):
        return []
    where = ("model.workloads.rules" if sc.model.workloads.rules else
             next(f"population.mix[{i}].workload" for i, m in enumerate(sc.population.mix)
                  if getattr(m, "workload", None) is not None))
    if not planner:
        return [f"{where}: per-class workload rules need a model kind that plans a workload per "
                f"device (transformer); '{sc.model.kind}' trains the whole model everywhere"]
    lines = []
    profiles = [m.profile for m in sc.population.mix]
    order = sc.model.workloads.order
    named = [(f"model.workloads.rules[{j}]", r) for j, r in enumerate(sc.model.workloads.rules)]
    named += [(f"population.mix[{i}].workload", m.workload)
              for i, m in enumerate(sc.population.mix) if getattr(m, "workload", None)]
    for w, r in named:
        for c in getattr(r, "classes", ()):
            if c != ANY_CLASS and c not in profiles:
                lines.append(f"{w}.classes: unknown device class '{c}' (population.mix has: "
                             f"{', '.join(dict.fromkeys(profiles))}, or '*')")
        kind = r.implied_kind()
        fixed = [k for k, v in (("lora_rank", r.lora_rank), ("blocks", r.blocks),
                                ("cut", r.cut), ("width", r.width)) if v is not None]
        if r.kind is None and len(fixed) > 1:
            lines.append(f"{w}: {' and '.join(fixed)} fix different workload kinds; set kind "
                         "(e.g. kind: split with lora_rank for split LoRA)")
        elif kind is not None and kind not in order:
            lines.append(f"{w}.kind: '{kind}' is not in model.workloads.order "
                         f"({', '.join(order)})")
    return lines


def matches(rule: Any, opt: Any) -> bool:
    """Does option ``opt`` (planning/options.py ``Option``) satisfy ``rule``?"""
    kind = rule.implied_kind()
    if kind is not None and opt.kind != kind:
        return False
    for name, attr in (("lora_rank", "rank"), ("blocks", "blocks"), ("cut", "cut")):
        v = getattr(rule, name)
        if v is not None and int(getattr(opt, attr)) != int(v):
            return False
    return rule.width is None or math.isclose(float(opt.width), float(rule.width))


def describe(opt: Any) -> str:
    """``lora r=16`` / ``partial blocks=4`` / ``split cut=2`` / ``width 0.5``."""
    if opt.kind == "lora":
        return f"lora r={opt.rank}"
    if opt.kind == "partial":
        return f"partial blocks={opt.blocks}"
    if opt.kind == "split":
        return f"split cut={opt.cut}"
    if opt.kind == "width":
        return f"width {opt.width:g}"
    return str(opt.kind)
