"""docs/bring-your-own.md: every ```yaml block, laid over a small scenario, passes the schema (so
the page names only fields and values that exist), and the figures it quotes are the measured
ones."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.config.scenario import parse_scenario
from tests.conftest import ROOT, small_doc

DOC = ROOT / "docs" / "bring-your-own.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_the_page_has_its_examples() -> None:
    assert len(BLOCKS) >= 6


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The files the examples name, generated in tmp_path (the working directory), and the
    factory ``my_models.credit:make``."""
    spec = importlib.util.spec_from_file_location(
        "byo_make_data", ROOT / "scenarios" / "byo" / "make_data.py")
    assert spec is not None and spec.loader is not None
    mk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mk)
    csv = mk.credit_default(tmp_path / "data" / "credit-default.csv", n=2000)
    mk.shapes(tmp_path / "data" / "shapes.npz", n=200, n_test=50)
    datasets = pytest.importorskip("datasets")
    import pandas as pd

    table = datasets.Dataset.from_pandas(pd.read_csv(csv))
    table.train_test_split(test_size=0.25, seed=0).save_to_disk(str(tmp_path / "data/hf-credit"))
    pkg = tmp_path / "my_models"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "credit.py").write_text(
        "from torch import nn\n\n\n"
        "def make(input_shape, n_classes, hidden=16):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], hidden), nn.ReLU(),\n"
        "                         nn.Linear(hidden, n_classes))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for m in ("my_models", "my_models.credit"):
        sys.modules.pop(m, None)


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_yaml_example_validates(i: int, data_dir: Path) -> None:
    block = yaml.safe_load(BLOCKS[i])
    doc = small_doc()
    if "model" in block:  # an example's model replaces the small scenario's
        doc.pop("model")
    if "data" in block:
        doc.pop("data")
        doc["data"] = {}
    if "model" in block and "data" not in block and block["model"]["kind"] == "custom":
        doc["data"] = {"dataset": "tabular", "path": "data/credit-default.csv",
                       "params": {"label": "default"}, "partition": "iid"}
    sc = parse_scenario(merge(doc, block))
    for key in block:
        assert getattr(sc, key) is not None


def test_quoted_parameter_counts_match_the_models() -> None:
    from simulator.workloads import vision

    text = DOC.read_text()

    def count(m: Any) -> int:
        return sum(p.numel() for p in m.parameters())

    for n in (count(vision.small_cnn((1, 28, 28), 62)), count(vision.resnet18((3, 224, 224), 1000)),
              count(vision.mobilenet_v2((3, 224, 224), 1000))):
        assert f"{n:,}" in text
