"""The compression comparison (issue 18 item 5; scenarios/llm-7b-compression.yaml,
benchmarks/bench_compression.py), shortened: every variant runs in analytic mode at 100,000
devices and the quantized / pruned / dequantized ones in real mode on the tiny Llama."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks import bench_compression as B

ADAPTER_MB = 32 * 2 * 8 * (4096 + 4096) * 2 / 1e6  # r 8 on q_proj, v_proj at bf16


def test_analytic_comparison_answers_the_question() -> None:
    df = B.compare("analytic", rounds=2)
    base = df.loc["bf16 LoRA (baseline)"]
    whole = 6_738_415_616 * 2 / 1e6  # the whole model, every round
    assert base.down_MB == pytest.approx(whole + ADAPTER_MB, rel=1e-9)
    assert base.up_MB == pytest.approx(ADAPTER_MB, rel=1e-9)
    four = df.loc["4-bit base"]
    assert four["fit_%"] > 3 * base["fit_%"]  # phones and small GPUs can hold a 4-bit 7B
    assert df.loc["pruned 50%"].down_MB < 0.6 * base.down_MB
    assert df.loc["int4 uploads"].up_MB < 0.3 * base.up_MB
    assert df.loc["downlink delta (cached base)"].down_MB == pytest.approx(ADAPTER_MB, rel=1e-9)
    assert df.loc["downlink int8"].down_MB < 0.52 * base.down_MB
    allin = df.loc["all: 4-bit + delta + int4 up"]
    assert allin.completed > 3 * base.completed


def test_real_variants_train() -> None:
    names = ["bf16 LoRA (baseline)", "4-bit base", "pruned 50%", "downlink int8"]
    df = B.compare("real", rounds=2, names=names)
    assert np.isfinite(df.loss).all()
    assert df.loss.nunique() == len(names)  # each technique changes what is trained
