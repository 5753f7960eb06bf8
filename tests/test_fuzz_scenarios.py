"""Fuzzing the scenario loader: whatever comes in, the only outcomes are a Scenario or a
ScenarioError / InputError whose lines are single lines naming a field ("path: message").

* ``parse_scenario`` on documents made by mutating a valid one (wrong types, missing and extra
  keys, extreme numbers, nested garbage) at any field path of the schema;
* ``read_yaml`` / ``load_scenario`` on generated YAML-ish text and raw bytes;
* the CLI's ``--set KEY=VALUE`` parsing on generated values.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from simulator import InputError
from simulator.config.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
    read_yaml,
)
from tests.conftest import small_doc

FUZZ = settings(max_examples=500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
HANDLED = (ScenarioError, InputError)

Path_ = tuple[Any, ...]


# --- where to mutate ----------------------------------------------------------------------------
def _schema_paths(model: type[BaseModel], prefix: Path_ = ()) -> list[Path_]:
    """Every field path of the pydantic schema (nested models followed), so fields that the base
    document leaves at their defaults are fuzzed too, and new fields are picked up automatically."""
    out: list[Path_] = []
    for name, field in model.model_fields.items():
        path = prefix + (name,)
        out.append(path)
        ann = field.annotation
        candidates = getattr(ann, "__args__", ()) or (ann,)
        for c in candidates:
            if isinstance(c, type) and issubclass(c, BaseModel):
                out += _schema_paths(c, path)
    return out


def _doc_paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = []
    items = node.items() if isinstance(node, dict) else (
        enumerate(node) if isinstance(node, list) else ())
    for k, v in items:
        out.append(prefix + (k,))
        out += _doc_paths(v, prefix + (k,))
    return out


BASE = small_doc(**{"output.checkpoint_every": 2})
PATHS = sorted(set(_schema_paths(Scenario)) | set(_doc_paths(BASE)), key=repr)


# --- what to put there ----------------------------------------------------------------------------
EXTREMES = [0, -1, 1, 2**31, 2**63, -(2**63), 2**64 + 1, 10**30, 1e-300, 1e308, -1e308,
            float("inf"), float("-inf"), float("nan"), 0.5, 1.0000001, -0.0]
WEIRD_STRINGS = ["", " ", "random", "local", "ray", "mlp", "digits", "rpi4", "../x", "/abs",
                 "..", "\x00", "nan", "1e9", "-1", "yes", "NO", "~", "null", "a" * 300,
                 "\ud800", "ü", "💥", "os.system", "subprocess.Popen", "{}", "[]"]
scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(EXTREMES),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(WEIRD_STRINGS), st.text(max_size=20),
)
garbage = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(), st.none(),
                                  st.booleans()), inner, max_size=4),
    ),
    max_leaves=8,
)


def _set(doc: dict[str, Any], path: Path_, value: Any) -> None:
    node: Any = doc
    for p in path[:-1]:
        if isinstance(node, dict):
            if not isinstance(node.get(p), (dict, list)):
                node[p] = {}
            node = node[p]
        elif isinstance(node, list) and isinstance(p, int) and p < len(node):
            node = node[p]
        else:
            return
    last = path[-1]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int)
                                  and last < len(node)):
        node[last] = value


def _delete(doc: dict[str, Any], path: Path_) -> None:
    node: Any = doc
    for p in path[:-1]:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)
    elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
        del node[path[-1]]


def _get(doc: Any, path: Path_) -> Any:
    for p in path:
        try:
            doc = doc[p]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), garbage),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("extra"), st.sampled_from([()] + PATHS), st.text(max_size=12)),
    st.tuples(st.just("retype"), st.sampled_from(PATHS), st.sampled_from(["str", "list", "dict"])),
)


def _mutate(muts: list[tuple[str, Path_, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for op, path, arg in muts:
        if op == "set":
            _set(doc, path, arg)
        elif op == "delete":
            _delete(doc, path)
        elif op == "extra":
            _set(doc, path + (arg or "x_extra",), 1)
        else:
            cur = _get(doc, path)
            _set(doc, path, {"str": str(cur), "list": [cur], "dict": {"value": cur}}[arg])
    return doc


def _check_error(exc: ScenarioError | InputError) -> None:
    lines = exc.lines if isinstance(exc, ScenarioError) else [str(exc)]
    assert lines
    for line in lines:
        assert "\n" not in line, line
        assert ": " in line, line  # "field.path: what is allowed"


# --- properties -----------------------------------------------------------------------------------
@FUZZ
@given(st.lists(mutation, min_size=1, max_size=4))
def test_parse_scenario_never_crashes(muts: list[tuple[str, Path_, Any]]) -> None:
    doc = _mutate(muts)
    try:
        sc = parse_scenario(doc)
    except HANDLED as exc:
        _check_error(exc)
    else:
        assert isinstance(sc, Scenario)


@settings(max_examples=100, deadline=None)
@given(garbage)
def test_parse_scenario_on_arbitrary_values(doc: Any) -> None:
    try:
        parse_scenario(doc)
    except HANDLED as exc:
        _check_error(exc)


YAML_PIECES = ["name", "rounds", "population", "size", "mix", "profile", "share", ":", ": ",
               "- ", "\n", "  ", "[", "]", "{", "}", ",", "&a ", "*a", "&b ", "*b", "<<: *a",
               "? ", "|", ">", '"', "'", "\\", "#", "~", "1e9", ".nan", "-.inf", "0x1F",
               "0o17", "1_000", "190:20:30", "2001-12-14", "2001-13-45", "9" * 5000, "\t",
               "\x00", "\ufeff", "\x85", "!!python/object:os.system", "!!python/name:os.system",
               "!!binary", "!!set", "!!omap", "!!timestamp", "!!int", "!!float", "!foo",
               "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "yes", "on", "null"]
BASE_YAML = yaml.safe_dump(small_doc())
yaml_text = st.one_of(
    st.lists(st.sampled_from(YAML_PIECES), max_size=40).map("".join),
    st.text(max_size=200),
    st.builds(lambda pre, post: pre + BASE_YAML + post,
              st.lists(st.sampled_from(YAML_PIECES), max_size=6).map("".join),
              st.lists(st.sampled_from(YAML_PIECES), max_size=6).map("".join)),
)


@FUZZ
@given(st.one_of(yaml_text, st.binary(max_size=300)))
def test_read_yaml_never_crashes(content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "s.yaml"
        if isinstance(content, bytes):
            f.write_bytes(content)
        else:
            f.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            read_yaml(f)
            load_scenario(f)
        except HANDLED as exc:
            _check_error(exc)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=12).map("".join),
       st.sampled_from(["rounds", "training.lr", "population.mix", "selection.policy", "x.y.z",
                        "name"]))
def test_set_overrides_never_crash(value: str, key: str) -> None:
    from simulator.cli.main import _parse_sets

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "s.yaml"
        f.write_text(BASE_YAML)
        try:
            load_scenario(f, _parse_sets([f"{key}={value}"]))
        except HANDLED as exc:
            _check_error(exc)


def _one_analytic_round(doc: dict[str, Any]) -> None:
    """Validate means it runs: what parse + build (``fedfleet validate``) accepts runs a round."""
    from simulator.io.recording import MemoryRecorder
    from simulator.loop.simulation import Simulation, build_parts

    doc = copy.deepcopy(doc)
    doc.update(mode="analytic", rounds=1, executor={"kind": "local"})
    doc.setdefault("output", {})
    if isinstance(doc["output"], dict):
        doc["output"]["checkpoint_every"] = 0
    try:
        sc = parse_scenario(doc)
        build_parts(sc)
    except HANDLED as exc:  # refused by validate: fine, if it is one line naming the field
        _check_error(exc)
        return
    sim = Simulation(sc)
    try:
        rec = MemoryRecorder()
        sim.step(rec)  # no exception of any kind: validate accepted it
        assert len(rec) == 1 and list(rec.rounds["round"]) == [0]
    finally:
        sim.close()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(st.lists(mutation, min_size=1, max_size=3))
def test_every_valid_mutant_runs_one_analytic_round(muts: list[tuple[str, Path_, Any]]) -> None:
    _one_analytic_round(_mutate(muts))


def test_the_base_scenario_runs_one_analytic_round() -> None:
    """The property above is not vacuous: the unmutated document runs."""
    _one_analytic_round(copy.deepcopy(BASE))
