"""Split learning (SplitFed): same gradients as unsplit training; activation traffic counted;
partial training stops backward at the lowest trainable block."""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_lora import TINY, tiny_workload

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def _grads(model, x, y, cut=None):
    from simulator.workloads.split import SplitBoundary

    model.zero_grad(set_to_none=True)
    boundary = SplitBoundary(model, cut) if cut is not None else None
    if boundary is not None:
        boundary.__enter__()
    try:
        logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), y)
        loss.backward()
        if boundary is not None:
            boundary.device_backward()
    finally:
        if boundary is not None:
            boundary.__exit__(None, None, None)
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, boundary


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_split_gradients_equal_unsplit_full_model(cut):
    from simulator.workloads.llm import build_llama

    torch.set_num_threads(1)
    model = build_llama(dict(TINY, vocab_size=24), 5)
    model.train()
    for p in model.parameters():
        p.requires_grad_(True)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 24, (3, 16), generator=g)
    y = torch.randint(0, 24, (3, 16), generator=g)
    loss_a, ga, _ = _grads(model, x, y)
    loss_b, gb, boundary = _grads(model, x, y, cut)
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert set(ga) == set(gb) and len(ga) == len(list(model.parameters()))
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-5), n
    # b * s * h * 4 bytes (fp32 here) each way for this one step
    assert boundary.bytes_up == 3 * 16 * 32 * 4 == boundary.bytes_down and boundary.steps == 1


def test_split_lora_gradients_equal_unsplit():
    from simulator.workloads.llm import build_llama
    from simulator.workloads.lora import LoraSpec, adapter_pairs, attach_lora

    torch.set_num_threads(1)
    model = attach_lora(build_llama(dict(TINY, vocab_size=24), 5), LoraSpec(r_max=4, alpha=8.0))
    with torch.no_grad():
        for pr in adapter_pairs(model):
            pr.b.normal_(0.0, 0.05)
    x = torch.randint(0, 24, (2, 16))
    y = torch.randint(0, 24, (2, 16))
    _, ga, _ = _grads(model, x, y)
    _, gb, _ = _grads(model, x, y, 1)
    assert set(ga) == set(gb) and all("lora_" in n for n in ga)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], atol=1e-5), n


def test_split_client_trains_like_an_unsplit_client_and_counts_traffic():
    from simulator.config.llm import spec_from_config
    from simulator.planning.llm_cost import split_step_bytes
    from simulator.workloads.llm import StateConfig, TrainConfig
    from simulator.workloads.lora import LoraSpec

    state = StateConfig(LoraSpec(r_max=4, alpha=8.0), "none", split_train="lora")
    w = tiny_workload(state=state, train=TrainConfig(1, 2, 0.01, "adam"))
    w.wire_bytes = 2.0  # bf16 on the wire, as model.dtype_bytes: 2
    g = w.initial_state()
    cid = next(c for c in range(60) if w.dataset.n_samples[c] % 2 == 0)
    split = w.train_client(g, cid, 99, "split", rank=2, cut=1)
    plain = w.train_client(g, cid, 99, "lora", rank=2)
    assert np.allclose(split.values, plain.values, atol=1e-6)
    assert np.array_equal(split.trained, plain.trained)
    # The device uploads only its half: adapters of blocks below the cut.
    sent_blocks = {s.block for s in w.layout.slots if split.sent[s.start:s.stop].any()}
    assert sent_blocks == {0}
    steps = split.stats["steps"]
    spec = spec_from_config("llama", dict(TINY, vocab_size=w.vocab, max_position_embeddings=16))
    per_step = split_step_bytes(spec, 16, 2, 2.0)
    assert split.stats["split_bytes_up"] == split.stats["split_bytes_down"] == steps * per_step


def test_partial_backward_stops_at_the_lowest_trainable_block():
    from simulator.workloads.llm import StateConfig
    from simulator.workloads.partial import top_blocks

    w = tiny_workload(state=StateConfig(None, "top", 1))
    assert {s.block for s in w.layout.slots} == {1}  # only the top block is in the state
    seen: dict[int, bool] = {}
    layers = w.model.model.layers
    hooks = [layer.register_forward_hook(
        lambda m, a, out, i=i: seen.__setitem__(i, bool(out[0].requires_grad if isinstance(
            out, tuple) else out.requires_grad))) for i, layer in enumerate(layers)]
    g = w.initial_state()
    res = w.train_client(g, 4, 5, "partial", blocks=1)
    for h in hooks:
        h.remove()
    assert seen == {0: False, 1: True}  # no autograd graph below block 1
    assert list(top_blocks(2, 1)) == [1]
    assert np.all(res.trained == 1.0) and np.abs(res.values - g).max() > 1e-5
    assert all(p.grad is None for p in layers[0].parameters())
