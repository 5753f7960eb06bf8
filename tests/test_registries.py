"""Open registries (simulator/core/registry.py): every part of a scenario is looked up by name,
plugins add their own with the ``register_*`` decorators, and ``fedfleet validate`` builds every
part that needs no training, refusing what cannot run with one line generated from what the
parts declare."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from simulator import InputError
from simulator.cli.main import main
from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.core import registry as R
from tests.conftest import ROOT, small_doc

PREFIX = "fedfleet: error: "
CATALOGUE = (R.MODEL_KINDS, R.DATASETS, R.PARTITIONERS, R.WORKLOADS, R.POLICIES, R.STRATEGIES,
             R.TRIGGERS)
TINY_LLAMA = {"kind": "transformer", "preset": "tiny-llama", "seq_len": 16}


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write plugin modules into a directory on sys.path; afterwards the registries and
    sys.modules are as they were (a plugin registers into process-wide registries)."""
    saved = [dict(reg._entries) for reg in CATALOGUE]
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, code: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(code))
        return name

    yield write
    for reg, entries in zip(CATALOGUE, saved, strict=True):
        reg._entries.clear()
        reg._entries.update(entries)
    for mod in set(sys.modules) - before:
        del sys.modules[mod]


def _validate(tmp_path: Path, doc: dict[str, Any], capsys: pytest.CaptureFixture[str]
              ) -> tuple[int, list[str], str]:
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(doc, sort_keys=False))
    capsys.readouterr()
    rc = main(["validate", str(f)])
    out = capsys.readouterr()
    return rc, out.err.splitlines(), out.out


def _one_line(rc: int, lines: list[str], needle: str) -> str:
    assert rc == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith(PREFIX + needle), lines
    assert "Traceback" not in lines[0]
    return lines[0]


# --- the catalogue -------------------------------------------------------------------------------
def test_looking_names_up_imports_neither_torch_nor_the_parts() -> None:
    """Names, declarations and the kind check of every built-in model kind, dataset,
    partitioner, workload kind and policy load without torch (built-ins are lazy strings)."""
    code = textwrap.dedent("""
        import json, sys
        from simulator.core import registry as R
        regs = (R.MODEL_KINDS, R.DATASETS, R.PARTITIONERS, R.WORKLOADS, R.POLICIES)
        names = {r.field: r.names() for r in regs}
        decl = sorted(R.MODEL_KINDS.entry("transformer").declares)
        lazy = "simulator.selection.oort" not in sys.modules
        for r in regs:
            for n in r.names():
                r.load(n)
        print(json.dumps({"names": names, "decl": decl, "lazy": lazy,
                          "heavy": [m for m in ("torch", "ray") if m in sys.modules]}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["names"] == {
        "model.kind": ["cnn", "custom", "mlp", "mobilenet_v2", "resnet18", "transformer"],
        "data.dataset": ["digits", "hf", "images", "synthetic", "tabular", "text"],
        "data.partition": ["dirichlet", "iid", "natural", "shards"],
        "model.workloads.order": ["full", "lora", "partial", "split", "width"],
        "selection.policy": ["deadline", "fair", "oort", "power_of_choice", "random", "tifl"]}
    assert "takes:tokens" in got["decl"]
    assert got["lazy"], "listing names imported a policy module"
    assert got["heavy"] == [], got["heavy"]


def test_builtin_policy_names_are_the_registry_s() -> None:
    from simulator.config.selection import BUILTIN_POLICIES

    assert sorted(BUILTIN_POLICIES) == R.POLICIES.names()


@pytest.mark.parametrize("over,line", [
    ({"model.kind": "resnet"}, "model.kind: unknown model kind 'resnet' (allowed: cnn, custom, "
                               "mlp, mobilenet_v2, resnet18, transformer, or one a plugin"),
    ({"data.dataset": "cifar"}, "data.dataset: unknown dataset 'cifar' (allowed: digits, hf, "
                                "images, synthetic, tabular, text,"),
    ({"data.partition": "zipf"}, "data.partition: unknown partitioner 'zipf' (allowed: "
                                 "dirichlet, iid, natural, shards,"),
    ({"selection.policy": "best"}, "selection.policy: unknown selection policy 'best' (allowed: "
                                   "deadline, fair, oort, power_of_choice, random, tifl,"),
    ({"model.workloads.order": ["lora", "adapters"]},
     "model.workloads.order[1]: unknown workload kind 'adapters' (allowed: full, lora,"),
])
def test_unknown_names_are_one_line_with_what_is_allowed(over: dict, line: str) -> None:
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(small_doc(**over))
    assert len(ei.value.lines) == 1 and ei.value.lines[0].startswith(line), ei.value.lines


def test_refusals_are_generated_from_declarations() -> None:
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(small_doc(**{"data.partition": "natural"}))
    assert ei.value.lines == ["data.partition: 'natural' cannot split data.dataset 'digits' "
                              "(it needs natural clients; 'digits' has none)"]
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(small_doc(**{"model.preset": "llama-2-7b"}))
    assert ei.value.lines == ["model.preset: only for kind 'transformer' (model.kind is 'mlp')"]
    doc = small_doc(**{"data": {"dataset": "text"}})
    doc["model"] = dict(TINY_LLAMA, clock_proxy={"params": 1e6, "train_flops_per_sample": 1e9})
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(doc)
    # a transformer's clock proxy is another transformer (issue 13 item 3), never dense figures
    assert ei.value.lines == ["model.clock_proxy: a transformer is charged as another transformer: "
                              "give preset and/or config (params/train_flops_per_sample are for "
                              "dense models)"]
    # The same generator, on a made-up pair of registries.
    a: R.Registry[Any] = R.Registry("thing", "x.thing")
    b: R.Registry[Any] = R.Registry("source", "x.source")
    a.add("t", object(), declares=["takes:apples", "takes:pears"])
    b.add("s", object(), declares=["gives:plums"])
    b.add("p", object(), declares=["gives:pears"])
    assert R.mismatch(a, "t", b, "s", "eat") == ("x.thing: 't' cannot eat x.source 's' (it takes "
                                                 "apples or pears; 's' gives plums)")
    assert R.mismatch(a, "t", b, "p", "eat") is None


def test_selection_params_of_a_builtin_say_where_they_go() -> None:
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(small_doc(**{"selection.policy": "oort", "selection.params": {"alpha": 1}}))
    assert ei.value.lines == ["selection.params: selection policy 'oort' takes no parameters "
                              "(got alpha); 'oort' takes its parameters in selection.oort"]


# --- validate builds the parts -------------------------------------------------------------------
def test_validate_builds_the_parts_and_refuses_mlp_on_text(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    rc, lines, out = _validate(tmp_path, small_doc(), capsys)
    assert rc == 0 and lines == [] and ": ok (" in out
    doc = small_doc(**{"data": {"dataset": "text", "samples_per_client": 4}, "model.seq_len": 16})
    parse_scenario(doc)  # the schema alone accepts it: the parts do not fit
    rc, lines, _ = _validate(tmp_path, doc, capsys)
    assert _one_line(rc, lines, "model.kind:") == (
        PREFIX + "model.kind: 'mlp' cannot train on data.dataset 'text' (it takes features; "
        "'text' gives tokens)")
    doc = small_doc(model=dict(TINY_LLAMA))
    rc, lines, _ = _validate(tmp_path, doc, capsys)
    _one_line(rc, lines, "model.kind: 'transformer' cannot train on data.dataset 'digits'")


def test_validate_turns_a_build_error_into_one_line(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A part that fails to build (here the selector) is the usual one-line error, exit 2."""
    import simulator.loop.simulation as sim

    calls = []

    def boom(sc: Any) -> None:
        calls.append(sc.name)
        raise InputError("selection.policy", "cannot be built here")

    monkeypatch.setattr(sim, "build_parts", boom)
    rc, lines, _ = _validate(tmp_path, small_doc(), capsys)
    assert calls == ["small"]
    assert _one_line(rc, lines, "selection.policy:") == (
        PREFIX + "selection.policy: cannot be built here")


def test_non_selector_under_selection_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             plugin_dir: Any) -> None:
    mod = plugin_dir("notaselector_mod", """
        class Thing:
            def __init__(self, scenario, population):
                pass

            def observe(self, feedback):
                pass
    """)
    path = f"{mod}.Thing"
    rc, lines, _ = _validate(tmp_path, small_doc(plugins=[path], **{"selection.policy": path}),
                             capsys)
    assert _one_line(rc, lines, "selection.policy:") == (
        PREFIX + f"selection.policy: '{path}' is not a selection policy (it has no select, "
        "state_dict, load_state_dict)")
    rc, lines, _ = _validate(tmp_path, small_doc(
        plugins=["os.path"], **{"selection.policy": "os.path"}), capsys)
    _one_line(rc, lines, "selection.policy: 'os.path' is not a selection policy")


# --- plugins -------------------------------------------------------------------------------------
DATASET_PLUGIN = """
    import numpy as np
    from pydantic import BaseModel, ConfigDict, Field
    from simulator.core.registry import register_dataset

    class BlobParams(BaseModel):
        model_config = ConfigDict(extra="forbid")
        x: int = Field(3, ge=1, le=64)

    class Blobs:
        n_classes = 2

        def __init__(self, n, p):
            self.n_features = p.x
            self.n_samples = np.full(n, 5, np.int64)

        def client_data(self, cid):
            g = np.random.default_rng(cid)
            y = g.integers(0, 2, 5)
            return g.normal(y[:, None], 1.0, (5, self.n_features)).astype(np.float32), y

        def test_data(self):
            return self.client_data(10**9)

    @register_dataset("blobs", gives="features", params=BlobParams)
    def build(scenario, population_size, params):
        return Blobs(population_size, params)

    @register_dataset("chars", gives="tokens")
    def build_chars(scenario, population_size, params):
        raise AssertionError("never built: no model kind here takes tokens")
"""


def test_plugin_dataset_with_params(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    plugin_dir: Any) -> None:
    mod = plugin_dir("blobs_plugin", DATASET_PLUGIN)
    doc = small_doc(plugins=[mod], data={"dataset": "blobs", "params": {"x": 7}})
    rc, lines, out = _validate(tmp_path, doc, capsys)
    assert rc == 0 and lines == [], lines
    from simulator.data import build_dataset

    ds = build_dataset(parse_scenario(doc), 200)
    assert ds.n_features == 7 and ds.client_data(3)[0].shape == (5, 7)
    for params, needle in (({"x": 0}, "data.params.x: Input should be greater than or equal to 1"),
                           ({"y": 1}, "data.params.y: unknown parameter (allowed: x)")):
        rc, lines, _ = _validate(tmp_path, dict(doc, data={"dataset": "blobs",
                                                           "params": params}), capsys)
        _one_line(rc, lines, needle)
    # A dataset that gives tokens is refused for an mlp (generated from the two declarations).
    rc, lines, _ = _validate(tmp_path, dict(doc, data={"dataset": "chars"}), capsys)
    assert _one_line(rc, lines, "model.kind:") == (
        PREFIX + "model.kind: 'mlp' cannot train on data.dataset 'chars' (it takes features; "
        "'chars' gives tokens)")
    # Parameters for a part that takes none.
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(small_doc(**{"data.params": {"x": 1}}))
    assert ei.value.lines == ["data.params: dataset 'digits' takes no parameters (got x)"]


MODEL_PLUGIN = """
    from pydantic import BaseModel, ConfigDict, Field
    import simulator
    from simulator.planning.base import FullModelPlanner

    class WideParams(BaseModel):
        model_config = ConfigDict(extra="forbid")
        x: float = Field(1.0, gt=0, le=4)

    @simulator.register_model("wide", takes="features", params=WideParams)
    class Wide:
        def __init__(self, scenario, params):
            self.scenario, self.params = scenario, params

        def planner(self, population, n_features, n_classes):
            return FullModelPlanner(self.scenario, population, n_features, n_classes)

        def workload(self, population_size):
            return ("wide workload", self.params.x, population_size)
"""


def test_plugin_model_kind_with_params(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       plugin_dir: Any) -> None:
    mod = plugin_dir("wide_plugin", MODEL_PLUGIN)
    doc = small_doc(plugins=[mod], model={"kind": "wide", "params": {"x": 2.5}})
    rc, lines, _ = _validate(tmp_path, doc, capsys)
    assert rc == 0 and lines == [], lines
    from simulator.planning import make_planner
    from simulator.planning.base import FullModelPlanner
    from simulator.workloads import build_workload

    sc = parse_scenario(doc)
    assert build_workload(sc, 11) == ("wide workload", 2.5, 11)  # dispatched by MODEL_KINDS
    assert isinstance(make_planner(sc, None, 64, 10), FullModelPlanner)  # type: ignore[arg-type]
    rc, lines, _ = _validate(tmp_path, dict(doc, model={"kind": "wide", "params": {"x": 9}}),
                             capsys)
    _one_line(rc, lines, "model.params.x: Input should be less than or equal to 4")
    rc, lines, _ = _validate(tmp_path, dict(doc, model={"kind": "wide", "preset": "tiny-llama"}),
                             capsys)
    _one_line(rc, lines, "model.preset: only for kind 'transformer' (model.kind is 'wide')")


def test_build_workload_dispatches_through_the_registry(plugin_dir: Any) -> None:
    from simulator.workloads import build_workload

    sc = parse_scenario(small_doc(**{"data": {"dataset": "text"}, "model.seq_len": 16}))
    with pytest.raises(InputError) as ei:
        build_workload(sc, 10)  # refused before torch is touched
    assert ei.value.field == "model.kind" and "cannot train on data.dataset 'text'" in str(
        ei.value)
    mod = plugin_dir("wide_plugin2", MODEL_PLUGIN)
    sc = parse_scenario(small_doc(plugins=[mod], model={"kind": "wide"}))
    assert build_workload(sc, 3) == ("wide workload", 1.0, 3)


POLICY_PLUGIN = """
    import numpy as np
    from pydantic import BaseModel, ConfigDict
    from simulator.core.registry import register_policy

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        parity: int = 0

    @register_policy("parity", params=Params)
    class Parity:
        def __init__(self, scenario, population, params):
            self.params = params

        def select(self, ctx, candidates, n, rng):
            return np.sort(candidates[candidates % 2 == self.params.parity][:n])

        def observe(self, feedback):
            pass

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    class WithParams(Parity):
        Params = Params
"""


def test_plugin_policy_by_name_and_by_class_path(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 plugin_dir: Any) -> None:
    from simulator.selection import make_selector

    mod = plugin_dir("parity_plugin", POLICY_PLUGIN)
    cand = np.arange(10)
    for policy, plugins in (("parity", [mod]), (f"{mod}.WithParams", [f"{mod}.WithParams"])):
        doc = small_doc(plugins=plugins, **{"selection.policy": policy,
                                            "selection.params": {"parity": 1}})
        rc, lines, _ = _validate(tmp_path, doc, capsys)
        assert rc == 0, lines
        sel = make_selector(parse_scenario(doc), None)  # type: ignore[arg-type]
        assert list(sel.select(None, cand, 3, None)) == [1, 3, 5]
        doc["selection"]["params"] = {"parity": "odd"}
        rc, lines, _ = _validate(tmp_path, doc, capsys)
        _one_line(rc, lines, "selection.params.parity: Input should be a valid integer")


PARTITION_PLUGIN = """
    import numpy as np
    from pydantic import BaseModel, ConfigDict, Field
    from simulator.core.registry import register_partitioner

    class OneClass(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label: int = Field(0, ge=0)

    @register_partitioner("one_class", params=OneClass)
    def one_class(g, sizes, spec):
        p = np.zeros(len(sizes))
        p[spec.params.label % len(sizes)] = 1.0
        return p
"""


def test_plugin_partitioner(plugin_dir: Any) -> None:
    from simulator.data import build_dataset

    mod = plugin_dir("one_class_plugin", PARTITION_PLUGIN)
    doc = small_doc(plugins=[mod], data={"dataset": "digits", "partition": "one_class",
                                         "partition_params": {"label": 3}})
    ds = build_dataset(parse_scenario(doc), 50)
    assert all(set(ds.client_data(c)[1]) == {3} for c in range(5))
    doc["data"]["partition_params"] = {"label": -1}
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(doc)
    assert ei.value.lines == ["data.partition_params.label: Input should be greater than or "
                              "equal to 0"]


WORKLOAD_PLUGIN = """
    from simulator.core.registry import register_workload
    from simulator.planning.options import Option

    @register_workload("frozen")
    def frozen(ctx):
        # Nothing trains: a forward pass per token, nothing sent up.
        return [Option("frozen", 1.0, 0.0, 2.0 * ctx.spec.total_params, 0.0, 0.0)]
"""


def test_plugin_workload_kind_in_the_planner(plugin_dir: Any) -> None:
    from simulator.planning.capability import CapabilityPlanner
    from tests.test_selection import make_pop

    mod = plugin_dir("frozen_plugin", WORKLOAD_PLUGIN)
    doc = small_doc(plugins=[mod], mode="analytic", deadline_s=None,
                    data={"dataset": "text"},
                    model=dict(TINY_LLAMA, workloads={"order": ["full", "frozen"]}))
    sc = parse_scenario(doc)
    pl = CapabilityPlanner(sc)
    full = pl.options[0].memory_bytes
    pop = make_pop(3)
    pop.memory_bytes = np.array([full * 2, full / 2, 0.5])
    plan = pl.plan(0, np.arange(3), pop)
    assert list(plan.kind) == ["full", "frozen", "none"]


def test_a_plugin_module_that_fails_to_import(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              plugin_dir: Any) -> None:
    mod = plugin_dir("broken_plugin", "raise RuntimeError('no GPU here')\n")
    line = "plugins[0]: importing 'broken_plugin' failed (RuntimeError: no GPU here)"
    with pytest.raises(ScenarioError) as ei:
        parse_scenario(small_doc(plugins=[mod]))
    assert ei.value.lines == [line]
    rc, lines, _ = _validate(tmp_path, small_doc(plugins=[mod]), capsys)
    assert _one_line(rc, lines, "plugins[0]:") == PREFIX + line
    # A policy class path that fails to import is named as the policy.
    doc = small_doc(plugins=[f"{mod}.Mine"], **{"selection.policy": f"{mod}.Mine"})
    rc, lines, _ = _validate(tmp_path, doc, capsys)
    assert _one_line(rc, lines, "selection.policy:") == (
        PREFIX + f"selection.policy: plugin '{mod}.Mine' (plugins[0]) importing '{mod}.Mine' "
        "failed (RuntimeError: no GPU here)")


def test_analytic_transformer_runs_need_only_sizes() -> None:
    from simulator.data import build_run_dataset
    from simulator.data.sizes import SizesOnlyDataset

    doc = small_doc(mode="analytic", data={"dataset": "text", "samples_per_client": 9},
                    model=dict(TINY_LLAMA))
    ds = build_run_dataset(parse_scenario(doc), 30)
    assert isinstance(ds, SizesOnlyDataset) and len(ds.n_samples) == 30
    doc["mode"] = "real"
    assert not isinstance(build_run_dataset(parse_scenario(doc), 30), SizesOnlyDataset)
