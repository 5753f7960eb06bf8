"""Compression comparison (issue 18 item 5): what each technique buys a phone-heavy fleet
fine-tuning a 7B model (scenarios/llm-7b-compression.yaml; docs/large-models.md 'Compression
comparison').

Each variant changes ``model.workloads`` fields of the scenario. Analytic mode: the scenario as
it is (100,000 devices, Llama-2-7B). Real mode: a 4-block tiny Llama really trained on the
generated text, charged as Llama-2-7B (``model.clock_proxy``), so its rounds, bytes and devices
that fit are the 7B's and its loss is the tiny model's, trained on the quantized / pruned /
dequantized values each variant gives it.

    python -m benchmarks.bench_compression            # 20 analytic rounds; 4 real, 30 invited
    python -m benchmarks.bench_compression --short    # 2 and 2 with 12 (the test's size)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from simulator.config.scenario import load_scenario  # noqa: E402
from simulator.loop.runner import run_scenario  # noqa: E402

SCENARIO = ROOT / "scenarios" / "llm-7b-compression.yaml"
W = "model.workloads."
# name -> (analytic overrides, real-mode overrides: one base method and one density there)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "bf16 LoRA (baseline)": ({}, {}),
    "4-bit base": ({W + "base_quantization": "auto"}, {W + "base_quantization": "nf4"}),
    "pruned 50%": ({W + "pruning": {"method": "magnitude", "densities": [0.5]}},) * 2,
    "int4 uploads": ({W + "compression": {"method": "int4"}},) * 2,
    "downlink delta (cached base)": ({W + "base_cached": True},) * 2,
    "downlink int8": ({W + "downlink": {"method": "int8"}},) * 2,
    "all: 4-bit + delta + int4 up": (
        {W + "base_quantization": "auto", W + "base_cached": True,
         W + "compression": {"method": "int4"}},
        {W + "base_quantization": "nf4", W + "base_cached": True,
         W + "compression": {"method": "int4"}}),
}
REAL = {"mode": "real", "model.preset": "tiny-llama",
        "model.config": {"vocab_size": 32, "max_position_embeddings": 256,
                         "initializer_range": 0.125},
        "model.clock_proxy": {"preset": "llama-2-7b"},
        "population.size": 400, "executor.kind": "local"}
REAL_CLIENTS = {"short": 12, "full": 30}  # invited per real round
# The accuracy cost alone: every client an L4 edge server, no deadline, so each variant trains
# the same clients on the same data and only the values they train on differ.
EQUAL = {"population.mix": [{"profile": "edge-server-l4", "share": 1.0}], "deadline_s": None}


def run_variant(mode: str, overrides: dict[str, Any], rounds: int,
                clients: int = REAL_CLIENTS["short"]) -> dict[str, Any]:
    real = {**REAL, "clients_per_round": clients} if mode != "analytic" else {}
    if mode == "real-equal":
        real.update(EQUAL)
    over = {"rounds": rounds, "executor.kind": "local", **real, **overrides}
    sc = load_scenario(SCENARIO, over)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        run = run_scenario(sc, name="c", runs_dir=d)
        r = pd.read_parquet(run / "rounds.parquet")
        c = pd.read_parquet(run / "clients.parquet")
    done = c[c.outcome == "completed"]
    fit = c.workload != "none"
    out: dict[str, Any] = {
        "round_s": float(r.duration_s.median()),
        "completed": float(r.completed.mean()),
        "fit_%": 100.0 * float(fit.mean()),
        "down_MB": float(done.bytes_down.median()) / 1e6 if len(done) else float("nan"),
        "up_MB": float(done.bytes_up.median()) / 1e6 if len(done) else float("nan"),
        "down_GB_per_round": float(c.bytes_down.sum()) / 1e9 / rounds,
        "wall_s": time.perf_counter() - t0,
    }
    if "base_quantization" in c:
        q = c.base_quantization[fit].value_counts()
        out["bases"] = ", ".join(f"{k} {v}" for k, v in q.items())
    if mode != "analytic":
        out["loss"] = float(r.loss.iloc[-1])
    return out


def compare(mode: str, rounds: int, names: list[str] | None = None,
            clients: int = REAL_CLIENTS["short"]) -> pd.DataFrame:
    rows = []
    for name in names or list(VARIANTS):
        ana, real = VARIANTS[name]
        rows.append({"variant": name, **run_variant(mode, ana if mode == "analytic" else real,
                                                    rounds, clients)})
    return pd.DataFrame(rows).set_index("variant")


def markdown(df: pd.DataFrame) -> str:
    """The table as GitHub markdown (numbers to 4 significant digits)."""
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    cols = [str(c) for c in df.columns]
    lines = ["| variant | " + " | ".join(cols) + " |",
             "|---|" + "---:|" * len(cols)]
    lines += [f"| {i} | " + " | ".join(cell(v) for v in row) + " |"
              for i, row in zip(df.index, df.itertuples(index=False), strict=True)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--short", action="store_true", help="2 analytic and 2 real rounds")
    args = ap.parse_args(argv)
    ra, rr = (2, 2) if args.short else (20, 4)
    clients = REAL_CLIENTS["short" if args.short else "full"]
    for mode, rounds in (("analytic", ra), ("real", rr), ("real-equal", rr)):
        if args.short and mode == "real-equal":
            continue
        df = compare(mode, rounds, clients=clients)
        who = f", {clients} invited per round" if mode != "analytic" else ""
        print(f"\n{mode} mode, {rounds} rounds{who}\n")
        print(markdown(df.drop(columns="wall_s")))
        print(f"\nwall {df.wall_s.sum():.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
