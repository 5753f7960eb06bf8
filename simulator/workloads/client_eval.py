"""Client-side evaluation on the host that holds the client's data (torch side).

``evaluate_clients(flat, client_ids, seeds, steps)`` of a workload returns float64 ``[n, 4]``:
per client (in the order given) the global model's loss and accuracy on the client's held-out
split, then (``steps > 0``) the loss and accuracy after fine-tuning a copy of the global model for
``steps`` local optimizer steps on its training split (fine-tune-then-evaluate personalisation);
NaN where a client holds nothing out (or has nothing to fine-tune on). Only these scalars leave
the host. Accuracy: the share of held-out samples (tokens for a transformer) whose argmax is the
label; loss: mean cross-entropy per sample (per token).

Fine-tuning uses the scenario's ``training`` optimizer, lr, momentum and batch size, batches from
``(seed, PERSONALIZE, round, client)`` (epochs of permutations, cut at ``steps``), plain local
loss (no strategy correction, no DP: the personalised model never leaves the client).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from simulator import FedFleetError

COLUMNS = ("loss", "accuracy", "personalized_loss", "personalized_accuracy")

Score = Callable[[np.ndarray, np.ndarray], tuple[float, float]]  # (x, y) -> (loss, accuracy)
Tune = Callable[[np.ndarray, np.ndarray, np.ndarray, int], None]  # (x, y, plan, seed)


def step_plan(n: int, steps: int, batch: int, seed: int) -> np.ndarray:
    """[steps, batch] sample indices (-1 pads a short last batch of an epoch): epochs of
    permutations drawn from ``default_rng(seed)``, cut after ``steps`` rows."""
    if n <= 0 or steps <= 0:
        return np.zeros((0, batch), np.int64)
    g = np.random.default_rng(int(seed))
    per_epoch = -(-n // batch)
    epochs = -(-steps // per_epoch)
    plan = np.full((epochs, per_epoch * batch), -1, np.int64)
    for e in range(epochs):  # as simulator/workloads/mlp.py batch_plan
        plan[e, :n] = g.permutation(n)
    return plan.reshape(epochs * per_epoch, batch)[:steps]


def optimizer_for(params: list[torch.nn.Parameter], training: Any) -> torch.optim.Optimizer:
    """The scenario's local optimizer (``training.optimizer``, lr, momentum) over ``params``."""
    if training.optimizer == "sgd":
        return torch.optim.SGD(params, lr=training.lr, momentum=training.momentum)
    return torch.optim.Adam(params, lr=training.lr)


def split_of(dataset: Any, cid: int) -> tuple[tuple[np.ndarray, np.ndarray],
                                              tuple[np.ndarray, np.ndarray]]:
    split = getattr(dataset, "split", None)
    if split is None:
        raise FedFleetError("evaluation.clients_per_round: the workload's dataset holds no "
                            "per-client test split (client evaluation is off in this scenario)")
    return split(int(cid))


def evaluate_clients(dataset: Any, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                     steps: int, batch: int, load: Callable[[np.ndarray], None], score: Score,
                     tune: Tune) -> np.ndarray:
    """The ``[n, 4]`` table (:data:`COLUMNS`) for ``client_ids``: ``load(flat)`` puts the global
    model in the workload's resident model, ``score`` evaluates it, ``tune`` fine-tunes it."""
    ids = np.asarray(client_ids, np.int64)
    out = np.full((len(ids), len(COLUMNS)), math.nan)
    for j, (cid, seed) in enumerate(zip(ids, np.asarray(seeds), strict=True)):
        (xtr, ytr), (xte, yte) = split_of(dataset, int(cid))
        if len(yte) == 0:
            continue
        load(flat)
        out[j, 0], out[j, 1] = score(xte, yte)
        if steps > 0 and len(ytr) > 0:
            torch.manual_seed(int(seed) % (2**63))  # dropout and other random layers
            tune(xtr, ytr, step_plan(len(ytr), steps, batch, int(seed)), int(seed))
            out[j, 2], out[j, 3] = score(xte, yte)
    return out


def classifier_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                     per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     chunk: int = 1024) -> tuple[float, float]:
    """(mean loss, accuracy) of a classifier on (x, y), in chunks, without gradients."""
    tot = correct = 0.0
    with torch.no_grad():
        for s in range(0, len(y), chunk):
            logits = model(x[s:s + chunk])
            yb = y[s:s + chunk]
            tot += float(per_sample(logits, yb).double().sum())
            correct += float((logits.argmax(1) == yb).sum())
    n = max(len(y), 1)
    return tot / n, correct / n


def run_steps(params: list[torch.nn.Parameter], plan: np.ndarray, training: Any,
              loss_of: Callable[[torch.Tensor], torch.Tensor | None]) -> None:
    """Optimizer steps over ``plan`` rows; ``loss_of(idx)`` gives a batch's mean loss (None:
    skip the row, e.g. a batch of one under batch norm)."""
    opt = optimizer_for(params, training)
    for row in plan:
        idx = torch.from_numpy(row[row >= 0])
        if len(idx) == 0:
            continue
        opt.zero_grad(set_to_none=True)
        loss = loss_of(idx)
        if loss is None:
            continue
        loss.backward()
        opt.step()
