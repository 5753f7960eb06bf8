"""Bring your own model and data (docs/bring-your-own.md): ``model.kind: custom`` from a factory
path and the built-in vision models, measured by the clock; tabular, .npz, image-folder and
save_to_disk datasets reading ``data.path``; partitioners and power-law sizes over them; a
``data.path`` no dataset reads refused with one line; per-class workload rules."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

import simulator
from simulator.cli.main import main
from simulator.data import build_dataset
from tests.conftest import ROOT, small_doc

PREFIX = "fedfleet: error: "
FEATURES = ["f0", "f1", "f2", "f3", "f4"]

FACTORY = """
import torch
from torch import nn


def make(input_shape, n_classes, hidden=16):
    d = 1
    for s in input_shape:
        d *= int(s)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(),
                         nn.Linear(hidden, n_classes))


CALLS = []


def with_loss(n_classes, hidden=16):
    model = nn.Sequential(nn.Linear(5, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def loss(logits, y):
        CALLS.append(len(y))
        return nn.functional.cross_entropy(logits, y, reduction="none")
    return model, loss


def broken(input_shape, n_classes):
    raise RuntimeError("no such layer")


def not_a_module():
    return 42
"""


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A user's model module ``byo_models`` importable from sys.path."""
    (tmp_path / "byo_models.py").write_text(textwrap.dedent(FACTORY))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "byo_models"
    sys.modules.pop("byo_models", None)


def tabular_csv(path: Path, n: int = 3000, seed: int = 0, banks: int = 40) -> Path:
    """A finance-like table: 5 numeric features, a string label linearly separable from two of
    them, a string column (not a feature) and a client (bank) id column."""
    g = np.random.default_rng(seed)
    x = g.normal(size=(n, 5))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] > 0, "default", "repaid")
    df = pd.DataFrame(x * [1000.0, 3.0, 1.0, 1.0, 50.0], columns=[f"f{i}" for i in range(5)])
    df["label"] = y
    df["region"] = g.choice(["north", "south"], n)
    df["bank"] = g.integers(0, banks, n)
    if path.suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_csv(path, index=False)
    return path


def image_arrays(n: int, seed: int, size: int = 12, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """uint8 grey images [n, H, W] whose class is a bright horizontal band (top, middle,
    bottom) over noise: learnable by a CNN in a few rounds."""
    g = np.random.default_rng(seed)
    y = g.integers(0, k, n)
    x = g.integers(0, 80, size=(n, size, size))
    band = size // k
    for c in range(k):
        x[y == c, c * band:(c + 1) * band, :] += 170
    return x.astype(np.uint8), y


def run(**over: Any) -> simulator.Run:
    doc = small_doc(**over)
    doc["output"] = {"checkpoint_every": 0}
    return simulator.run(doc, recorder="memory")


def _validate(tmp_path: Path, doc: dict[str, Any], capsys: pytest.CaptureFixture[str]
              ) -> tuple[int, list[str]]:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    capsys.readouterr()
    rc = main(["validate", str(f)])
    return rc, capsys.readouterr().err.splitlines()


def _one_line(rc: int, lines: list[str], field: str) -> str:
    assert rc == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(PREFIX + field + ":"), lines
    return lines[0]


# --- your own model ------------------------------------------------------------------------------
def test_measured_costs_are_hand_computed_for_a_two_layer_net() -> None:
    """FlopCounterMode on one forward + backward: Linear(10, 16) costs 2*10*16 forward and
    2*10*16 for its weight gradient (the input needs none); Linear(16, 3) 2*16*3 forward and
    2 x 2*16*3 backward: 4*160 + 6*48 = 928 FLOPs per sample."""
    from torch import nn

    from simulator.workloads.torch_model import measure

    m = measure(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3)), (10,), 3)
    assert m.n_params == 10 * 16 + 16 + 16 * 3 + 3 == 227
    assert m.state_bytes == 4 * 227
    assert m.train_flops_per_sample == 4 * 160 + 6 * 48
    assert m.activation_bytes_per_sample > 0


def test_builtin_vision_models_have_the_reference_parameter_counts() -> None:
    """torchvision's resnet18 (11,689,512) and mobilenet_v2 (3,504,872) at 1000 classes, LEAF's
    FEMNIST CNN (6,603,710 at 62 classes on 28x28), rebuilt in plain torch."""
    from simulator.workloads import vision

    def count(m: Any) -> int:
        return sum(p.numel() for p in m.parameters())

    assert count(vision.resnet18((3, 224, 224), 1000)) == 11_689_512
    assert count(vision.mobilenet_v2((3, 224, 224), 1000)) == 3_504_872
    assert count(vision.small_cnn((1, 28, 28), 62)) == 6_603_710


def test_resnet18_training_flops_are_about_three_forward_passes() -> None:
    """ResNet-18 forward is 1.814 GMACs at 224x224 (torchvision's figure); FlopCounterMode counts
    2 FLOPs per MAC and backward about twice forward (the stem's input needs no gradient)."""
    from simulator.workloads import vision
    from simulator.workloads.torch_model import measure

    m = measure(vision.resnet18((3, 224, 224), 1000), (3, 224, 224), 1000, batch=1)
    fwd = 2 * 1.814e9
    assert 2.8 * fwd < m.train_flops_per_sample < 3.0 * fwd


def test_custom_factory_model_trains_and_the_clock_charges_its_measured_size(
        factory, tmp_path) -> None:
    csv = tabular_csv(tmp_path / "t.csv")
    r = run(**{"model": {"kind": "custom", "factory": f"{factory}:make",
                         "factory_args": {"hidden": 24}},
               "data": {"dataset": "tabular", "path": str(csv), "partition": "iid",
                        "samples_per_client": 40, "params": {"features": FEATURES}}})
    n_params = 5 * 24 + 24 + 24 * 2 + 2  # 5 features, 2 classes
    ok = r.clients[r.clients.outcome == "completed"]
    assert len(ok) > 0
    assert np.allclose(ok.bytes_down, 4 * n_params) and np.allclose(ok.bytes_up, 4 * n_params)
    assert r.final_accuracy is not None and r.final_accuracy > 0.85


def test_custom_factory_may_return_its_loss_and_take_only_n_classes(factory, tmp_path) -> None:
    csv = tabular_csv(tmp_path / "t.csv")
    r = run(**{"model": {"kind": "custom", "factory": f"{factory}:with_loss"},
               "data": {"dataset": "tabular", "path": str(csv), "partition": "iid",
                        "samples_per_client": 40, "params": {"features": FEATURES}},
               "rounds": 8})
    assert sys.modules[factory].CALLS  # the factory's own loss trained the model
    assert r.final_accuracy is not None and r.final_accuracy > 0.8


@pytest.mark.parametrize(("factory_path", "needle"), [
    (":broken", "building the model failed (RuntimeError: no such layer)"),
    (":not_a_module", "must return an nn.Module"),
    (":missing", "has no 'missing'"),
])
def test_validate_builds_the_model_and_refuses_a_bad_factory(
        factory, factory_path, needle, tmp_path, capsys) -> None:
    doc = small_doc(**{"model": {"kind": "custom", "factory": factory + factory_path}})
    line = _one_line(*_validate(tmp_path, doc, capsys), "model.factory")
    assert needle in line


def test_validate_refuses_a_vision_model_on_tabular_data(tmp_path, capsys) -> None:
    csv = tabular_csv(tmp_path / "t.csv")
    doc = small_doc(**{"model": {"kind": "cnn"},
                       "data": {"dataset": "tabular", "path": str(csv), "partition": "iid"}})
    line = _one_line(*_validate(tmp_path, doc, capsys), "model.kind")
    assert "needs images (C, H, W)" in line


# --- your own data --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tabular_file_trains_with_string_labels(tmp_path, suffix) -> None:
    f = tabular_csv(tmp_path / f"t{suffix}")
    r = run(**{"data": {"dataset": "tabular", "path": str(f), "partition": "dirichlet",
                        "alpha": 0.5, "samples_per_client": 40}, "rounds": 5})
    assert r.final_accuracy is not None and r.final_accuracy > 0.85


def test_natural_partition_gives_one_client_per_id(tmp_path) -> None:
    from simulator.config.scenario import parse_scenario

    f = tabular_csv(tmp_path / "t.csv", n=2000, banks=30)
    doc = small_doc(**{"population.size": 20, "clients_per_round": 10,
                       "data": {"dataset": "tabular", "path": str(f), "partition": "natural",
                                "params": {"client_column": "bank"}}})
    sc = parse_scenario(doc)
    ds = build_dataset(sc, 20)
    df = pd.read_csv(f)
    per_bank = df.groupby(df.bank.astype(str)).size()
    top = per_bank.sort_values(ascending=False, kind="stable")
    assert set(ds.names) <= set(per_bank.index)
    for i, name in enumerate(ds.names):  # each client holds (1 - test_fraction) of its rows
        assert abs(ds.n_samples[i] - per_bank[name] * (1 - sc.data.test_fraction)) <= 1
    assert per_bank[ds.names].min() >= top.iloc[19] - 1e-9
    r = run(**{k: v for k, v in doc.items() if k != "output"})
    assert set(r.clients.client_id) <= set(range(20))


def test_partitioners_shape_the_label_mix_of_tabular_clients(tmp_path) -> None:
    from simulator.config.scenario import parse_scenario

    f = tabular_csv(tmp_path / "t.csv")

    def skew(**data: Any) -> float:
        doc = small_doc(**{"data": {"dataset": "tabular", "path": str(f),
                                    "samples_per_client": 40, **data}})
        ds = build_dataset(parse_scenario(doc), 200)
        share = [np.mean(ds.client_data(i)[1]) for i in range(200)]
        return float(np.std(share))

    iid, shards = skew(partition="iid"), skew(partition="shards", shards_per_client=1)
    dirichlet = skew(partition="dirichlet", alpha=0.1)
    assert iid < 0.12 < dirichlet and shards > 0.4  # shards of one label: all one class


def test_powerlaw_sizes_have_the_median_and_a_heavy_tail() -> None:
    from simulator.data.sizes import client_sizes, powerlaw_sizes

    p = powerlaw_sizes(20_000, 50, 1.2, seed=3)
    ln = client_sizes(20_000, 50, 0.5, seed=3)
    assert abs(np.median(p) - 50) <= 2
    top = np.sort(p)[::-1]
    assert top[:200].sum() / p.sum() > 0.1  # the top 1% hold over 10% of the samples
    assert np.sort(ln)[::-1][:200].sum() / ln.sum() < 0.05
    r = run(**{"data.size_distribution": "powerlaw", "data.size_exponent": 1.2})
    assert r.final_accuracy is not None


def test_npz_images_train_a_cnn_and_keep_their_shape(tmp_path) -> None:
    x, y = image_arrays(900, 0)
    xt, yt = image_arrays(300, 1)
    f = tmp_path / "imgs.npz"
    np.savez(f, x=x, y=y, x_test=xt, y_test=yt)
    r = run(**{"data": {"dataset": "images", "path": str(f), "partition": "iid",
                        "samples_per_client": 30},
               "model": {"kind": "cnn", "params": {"hidden": 32}}, "rounds": 5,
               "training.lr": 0.05})
    assert r.final_accuracy is not None and r.final_accuracy > 0.8  # chance is 1/3
    from simulator.data import build_dataset

    ds = build_dataset(r.scenario, 200)
    assert ds.input_shape == (1, 12, 12)
    assert len(ds.test_data()[1]) == 300  # the file's own test split


def test_image_folder_and_a_test_file(tmp_path) -> None:
    from PIL import Image

    x, y = image_arrays(120, 2)
    for i, (img, c) in enumerate(zip(x, y, strict=True)):
        d = tmp_path / "folder" / f"class_{c}"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.stack([img] * 3, -1)).save(d / f"{i}.png")
    xt, yt = image_arrays(60, 3)
    np.savez(tmp_path / "test.npz", x=np.stack([xt] * 3, 1), y=yt)  # [n, C, H, W]
    r = run(**{"data": {"dataset": "images", "path": str(tmp_path / "folder"),
                        "test_path": str(tmp_path / "test.npz"), "partition": "iid",
                        "samples_per_client": 10},
               "population.size": 30, "clients_per_round": 10,
               "model": {"kind": "custom", "factory": "simulator.workloads.vision:small_cnn",
                         "factory_args": {"hidden": 16}}})
    assert r.final_accuracy is not None
    ds = build_dataset(r.scenario, 30)
    assert ds.input_shape == (3, 12, 12) and len(ds.test_data()[1]) == 60


def test_save_to_disk_dataset_dict_trains_on_its_train_split(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    df = pd.read_csv(tabular_csv(tmp_path / "t.csv")).drop(columns=["region"])
    dd = datasets.Dataset.from_pandas(df).train_test_split(test_size=0.25, seed=0)
    dd.save_to_disk(str(tmp_path / "hf"))
    r = run(**{"data": {"dataset": "hf", "path": str(tmp_path / "hf"), "partition": "iid",
                        "samples_per_client": 40, "params": {"features": ["f0", "f1", "f2"]}},
               "rounds": 5})
    assert r.final_accuracy is not None and r.final_accuracy > 0.85
    ds = build_dataset(r.scenario, 200)
    assert ds.n_features == 3 and len(ds.test_data()[1]) == len(dd["test"])


def test_save_to_disk_image_dataset(tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    x, y = image_arrays(90, 4)
    ds = datasets.Dataset.from_dict({"img": [Image.fromarray(a) for a in x],
                                     "label": y.tolist()},
                                    features=datasets.Features({"img": datasets.Image(),
                                                                "label": datasets.Value("int64")}))
    ds.save_to_disk(str(tmp_path / "hfimg"))
    r = run(**{"data": {"dataset": "hf", "path": str(tmp_path / "hfimg"), "partition": "iid",
                        "samples_per_client": 10, "params": {"grayscale": True}},
               "population.size": 20, "clients_per_round": 8,
               "model": {"kind": "cnn", "params": {"hidden": 16}}})
    assert r.final_accuracy is not None
    assert build_dataset(r.scenario, 20).input_shape == (1, 12, 12)


# --- data.path a dataset cannot use: one line, exit 2, the field named ---------------------------
def test_data_path_on_a_dataset_that_reads_no_file_exits_2(tmp_path, capsys) -> None:
    f = tabular_csv(tmp_path / "t.csv")
    for dataset in ("digits", "synthetic"):
        doc = small_doc(**{"data.dataset": dataset, "data.path": str(f)})
        line = _one_line(*_validate(tmp_path, doc, capsys), "data.path")
        assert f"dataset '{dataset}' reads no file" in line and "tabular" in line


def test_data_path_the_dataset_cannot_read_exits_2(tmp_path, capsys) -> None:
    npz = tmp_path / "x.npz"
    np.savez(npz, x=np.zeros((4, 2)), y=np.arange(4))
    csv = tabular_csv(tmp_path / "t.csv")
    for dataset, path, needle in (("tabular", npz, "tabular data is .csv, .tsv or .parquet"),
                                  ("images", csv, "images are an .npz"),
                                  ("hf", csv, "not a dataset saved with save_to_disk")):
        doc = small_doc(**{"data": {"dataset": dataset, "path": str(path), "partition": "iid"}})
        assert needle in _one_line(*_validate(tmp_path, doc, capsys), "data.path")


def test_cli_run_exits_2_on_an_ignored_data_path(tmp_path) -> None:
    """The command line itself (a subprocess): exit status 2, one line on stderr."""
    import subprocess

    f = tabular_csv(tmp_path / "t.csv")
    doc = small_doc(**{"data.path": str(f)})
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-m", "simulator.cli.main", "run",
                          str(tmp_path / "s.yaml"), "--no-dashboard"], capture_output=True,
                         text=True, cwd=ROOT, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines() == [
        f"{PREFIX}data.path: dataset 'digits' reads no file, so it would be ignored (datasets "
        "that read one: hf, images, tabular, text)"]


# --- per-class workload rules --------------------------------------------------------------------
def _llm_doc(**extra: Any) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "scenarios" / "llm-lora-heterogeneous.yaml").read_text())
    doc.update(rounds=3, mode="analytic", executor={"kind": "local"},
               output={"checkpoint_every": 0}, deadline_s=None)
    for k, v in extra.items():
        doc[k] = v
    return doc


def test_per_class_rules_are_honoured_in_clients_parquet() -> None:
    """phones-lowend: rank 4 (its mix entry), laptops and edge servers: rank 16, Raspberry Pi 4:
    the top block only; the other classes keep the planner's choice."""
    doc = _llm_doc()
    doc["population"]["mix"][0]["workload"] = {"lora_rank": 4}  # phone-lowend
    doc["model"]["workloads"]["rules"] = [
        {"classes": ["laptop-cpu", "edge-server-l4"], "lora_rank": 16},
        {"classes": ["rpi4", "phone-lowend"], "kind": "partial", "blocks": 1},  # mix entry wins
    ]
    c = simulator.run(doc, recorder="memory").clients
    ranks = c[c.workload == "lora"].groupby("device_class")["rank"].agg(set).to_dict()
    assert ranks["phone-lowend"] == {4}
    assert ranks["laptop-cpu"] == {16} and ranks["edge-server-l4"] == {16}
    rpi = c[c.device_class == "rpi4"]
    assert len(rpi) > 0 and set(rpi.workload) == {"partial"} and set(rpi.blocks) == {1}
    assert set(c[c.device_class == "rpi4"].workload_rule) == {"partial blocks=1"}
    assert c.rule_honoured.all() and set(c.workload_note) == {""}
    free = c[c.workload_rule == ""]
    assert len(free) > 0 and set(free.device_class).isdisjoint(
        {"phone-lowend", "laptop-cpu", "edge-server-l4", "rpi4"})


def test_a_rule_that_does_not_fit_memory_is_reported_not_honoured() -> None:
    """7B on a fleet: a low-end phone cannot hold the LoRA-64 workload; clients.parquet says so
    and the client takes the planner's choice (or none with strict)."""
    doc = yaml.safe_load((ROOT / "scenarios" / "llm-7b-lora-fleet.yaml").read_text())
    doc.update(rounds=1, population={**doc["population"], "size": 2000},
               clients_per_round=300, output={"checkpoint_every": 0})
    mix = doc["population"]["mix"]
    low = next(i for i, m in enumerate(mix) if m["profile"] == "phone-lowend")
    lap = next(i for i, m in enumerate(mix) if m["profile"] == "laptop-rtx4060")
    mix[low]["workload"] = {"lora_rank": 64}
    mix[lap]["workload"] = {"lora_rank": 64, "strict": True}
    c = simulator.run(doc, recorder="memory").clients
    lowc = c[c.device_class == "phone-lowend"]
    assert len(lowc) > 0 and not lowc.rule_honoured.any()
    assert (lowc.workload != "lora").all() | (lowc["rank"] != 64).all()
    assert lowc.workload_note.str.startswith("rule not honoured: lora r=64 needs").all()
    lapc = c[c.device_class == "laptop-rtx4060"]
    if (~lapc.rule_honoured).any():  # strict: no workload rather than another one
        bad = lapc[~lapc.rule_honoured]
        assert (bad.outcome == "out_of_memory").all()
    ok = lapc[lapc.rule_honoured]
    assert ((ok.workload == "lora") & (ok["rank"] == 64)).all()


def test_rules_are_refused_where_they_cannot_apply(tmp_path, capsys) -> None:
    doc = small_doc()
    doc["population"]["mix"][0]["workload"] = {"lora_rank": 4}
    line = _one_line(*_validate(tmp_path, doc, capsys), "population.mix[0].workload")
    assert "per-class workload rules need a model kind that plans" in line
    doc = _llm_doc()
    doc["model"]["workloads"]["rules"] = [{"classes": ["phone-lowend"], "lora_rank": 5}]
    line = _one_line(*_validate(tmp_path, doc, capsys), "model.workloads.rules[0]")
    assert "matches no workload option" in line and "lora r=16" in line
    doc["model"]["workloads"]["rules"] = [{"classes": ["toaster"], "lora_rank": 4}]
    line = _one_line(*_validate(tmp_path, doc, capsys), "model.workloads.rules[0].classes")
    assert "unknown device class 'toaster'" in line


def test_transformer_clock_proxy_charges_the_bigger_model() -> None:
    """Train tiny-llama, charge llama-2-7b: every option is costed for the 7B model."""
    base = simulator.run(_llm_doc(), recorder="memory").clients
    doc = _llm_doc()
    doc["model"]["clock_proxy"] = {"name": "7b", "preset": "llama-2-7b"}
    prox = simulator.run(doc, recorder="memory").clients

    def lora16(c: Any) -> Any:
        return c[(c.workload == "lora") & (c["rank"] == 16)]

    small, big = lora16(base), lora16(prox)
    assert len(small) > 0 and len(big) > 0
    assert big.bytes_down.min() > 100 * small.bytes_down.max()
    assert big.memory_bytes.min() > 13e9 > small.memory_bytes.max()  # 7B fp16 weights


# --- a wrong column, a missing file, no Pillow: one line at validate time ----------------------
@pytest.mark.parametrize(("params", "field", "needle"), [
    ({"label": "nolabel"}, "data.params.label", "no column 'nolabel' in data.path"),
    ({"features": ["f0", "nope"]}, "data.params.features", "no column 'nope' in data.path"),
    ({"client_column": "nope"}, "data.params.client_column", "no column 'nope' in data.path"),
])
def test_a_wrong_column_is_one_line_at_validate(params, field, needle, tmp_path, capsys) -> None:
    csv = tabular_csv(tmp_path / "t.csv", n=200)
    partition = "natural" if "client_column" in params else "iid"
    doc = small_doc(**{"data": {"dataset": "tabular", "path": str(csv), "partition": partition,
                                "params": params}})
    assert needle in _one_line(*_validate(tmp_path, doc, capsys), field)


def test_a_missing_file_or_test_file_is_one_line_at_validate(tmp_path, capsys) -> None:
    csv = tabular_csv(tmp_path / "t.csv", n=200)
    for field, data in (("data.path", {"path": str(tmp_path / "absent.csv")}),
                        ("data.test_path", {"path": str(csv),
                                            "test_path": str(tmp_path / "absent.csv")})):
        doc = small_doc(**{"data": {"dataset": "tabular", "partition": "iid", **data}})
        assert "file not found" in _one_line(*_validate(tmp_path, doc, capsys), field)


def test_an_image_folder_without_pillow_is_refused_in_one_line(
        tmp_path, capsys, monkeypatch) -> None:
    (tmp_path / "folder" / "a").mkdir(parents=True)
    (tmp_path / "folder" / "a" / "0.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL raises ImportError
    doc = small_doc(**{"data": {"dataset": "images", "path": str(tmp_path / "folder"),
                                "partition": "iid"}})
    line = _one_line(*_validate(tmp_path, doc, capsys), "data.path")
    assert "needs Pillow" in line
