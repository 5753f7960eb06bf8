"""Client-side evaluation and personalisation (the ``evaluation:`` block).

Off by default (``clients_per_round: 0``): the run and its tables are then exactly as before.
When on, each client's local data is split once into a training split and a held-out split
(``client_test_fraction`` of its samples, chosen from ``(seed, CLIENT_SPLIT, client)``); clients
train on the training split only, and every ``client_every`` rounds a sample of
``clients_per_round`` clients (from ``(seed, CLIENT_EVAL, round)``) evaluates the new global model
on its held-out split, optionally after ``personalize_steps`` local fine-tuning steps.
``rounds.parquet`` gains the distribution (simulator/loop/client_eval.py; docs/strategies.md).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from simulator.config.base import Strict

# rng purposes (simulator/core/rng.py keys 1..10 are the engine's; adversary uses 101)
CLIENT_EVAL = 111  # which clients are evaluated in a round: (seed, CLIENT_EVAL, round)
CLIENT_SPLIT = 112  # each client's held-out samples: (seed, CLIENT_SPLIT, client)
PERSONALIZE = 113  # a client's fine-tuning batches: (seed, PERSONALIZE, round, client)

# Model kinds whose workloads implement evaluate_clients (simulator/workloads/client_eval.py).
CLIENT_EVAL_KINDS = ("mlp", "custom", "cnn", "resnet18", "mobilenet_v2", "transformer")


class Evaluation(Strict):
    clients_per_round: int = Field(0, ge=0, le=100_000_000, description=(
        "clients that evaluate the global model on their own held-out split in an evaluated "
        "round; 0 (the default) turns client evaluation off and keeps the run unchanged"))
    client_every: int = Field(1, ge=1, le=1_000_000, description=(
        "evaluate clients in rounds r with r % client_every == 0 (NaN columns in the others)"))
    client_test_fraction: float = Field(0.2, gt=0, lt=1, description=(
        "share of each client's local samples held out for its own evaluation (rounded, at "
        "least 1 and at most n-1; clients with one sample hold none out); with client "
        "evaluation on, clients train on the rest"))
    personalize_steps: int = Field(0, ge=0, le=100_000, description=(
        "fine-tune-then-evaluate: local optimizer steps (training.batch_size, lr, optimizer) "
        "each evaluated client takes from the global model on its training split before "
        "evaluating again (personalized_* columns); 0: no personalisation"))

    @property
    def on(self) -> bool:
        return self.clients_per_round > 0


def evaluation_problems(sc: Any) -> list[str]:
    ev = getattr(sc, "evaluation", None)
    if ev is None:
        return []
    lines: list[str] = []
    if not ev.on:
        if ev.personalize_steps > 0:
            lines.append("evaluation.personalize_steps: needs evaluation.clients_per_round > 0")
        return lines
    if ev.clients_per_round > sc.population.size:
        lines.append(f"evaluation.clients_per_round: {ev.clients_per_round} exceeds "
                     f"population.size ({sc.population.size})")
    if sc.mode != "real":
        lines.append("evaluation.clients_per_round: client evaluation trains and evaluates "
                     "models, so it needs mode: real (mode is 'analytic')")
    elif sc.model.kind not in CLIENT_EVAL_KINDS:
        lines.append(f"evaluation.clients_per_round: model.kind '{sc.model.kind}' cannot "
                     f"evaluate clients (allowed: {', '.join(CLIENT_EVAL_KINDS)})")
    return lines
