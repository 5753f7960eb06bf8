"""Split learning for decoder-only transformers (SplitFed, Thapa et al. AAAI 2022).

The device runs the embeddings and blocks ``[0, cut)``; the server runs blocks ``[cut, L)``, the
final norm and the head (labels go to the server: the "vanilla" split, not the U-shaped one).
Every step the device sends its activations ``[b, s, h]`` up, the server runs forward and backward
and sends the activations' gradient ``[b, s, h]`` back down, and the device finishes backward:
``b * s * h * bytes`` each way per step (shared/reference.md section 3).

The cut is a forward pre-hook on block ``cut`` (or on the final norm when ``cut == L``): the
device's output is detached there and replaced by a fresh leaf, exactly what crossing a network
does to an autograd graph. Gradients are therefore identical to unsplit training (tests check it
to 1e-5). FedFleet runs SplitFedV1: every client gets its own copy of the server part for the
round and both halves are averaged with FedAvg. SplitFedV2 (one shared server part updated client
after client) would make the result depend on the order clients reach the server, i.e. on the
actor layout, which the simulator's determinism rules out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def cut_module(model: nn.Module, cut: int) -> nn.Module:
    """The module whose input crosses the network: block ``cut`` or the final norm."""
    core: Any = model
    while not hasattr(core, "layers"):  # peft -> LlamaForCausalLM -> LlamaModel
        core = core.model if hasattr(core, "model") else core.base_model
    n_layers = len(core.layers)
    if not 0 <= cut <= n_layers:
        raise ValueError(f"split cut {cut} outside [0, {n_layers}]")
    return core.layers[cut] if cut < n_layers else core.norm


class SplitBoundary:
    """Context manager: while active, forward passes are cut at ``cut`` and traffic is counted.

    After ``loss.backward()`` (the server's backward) call :meth:`device_backward` to send the
    activation gradient down and finish the device's backward.
    """

    def __init__(self, model: nn.Module, cut: int) -> None:
        self.module = cut_module(model, cut)
        self.bytes_up = 0  # activations, device -> server (this host's dtype)
        self.bytes_down = 0  # activation gradients, server -> device
        self.elements_up = 0  # b * s * h per step: bytes on the wire = elements x dtype bytes
        self.elements_down = 0
        self.steps = 0
        self._sent: torch.Tensor | None = None
        self._received: torch.Tensor | None = None
        self._handle: Any = None

    def _hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args else kwargs["hidden_states"]
        received = hidden.detach().requires_grad_(True)
        self._sent, self._received = hidden, received
        self.elements_up += hidden.numel()
        self.bytes_up += hidden.numel() * hidden.element_size()
        if args:
            return (received, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": received}

    def __enter__(self) -> SplitBoundary:  # noqa: PYI034 - Self needs Python 3.11
        self._handle = self.module.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._sent = self._received = None

    def device_backward(self) -> None:
        """Send the gradient of the activations down and backpropagate it through the device."""
        sent, received = self._sent, self._received
        if sent is None or received is None:
            raise RuntimeError("device_backward() before a forward pass through the cut")
        self.steps += 1
        if sent.requires_grad and received.grad is not None:  # the device has trainable tensors
            self.elements_down += received.grad.numel()
            self.bytes_down += received.grad.numel() * received.grad.element_size()
            sent.backward(received.grad)
        self._sent = self._received = None


def activation_bytes(batch: int, seq_len: int, hidden: int, bytes_per_element: int) -> int:
    """One step's traffic in one direction: ``b * s * h * bytes``."""
    return int(batch * seq_len * hidden * bytes_per_element)
