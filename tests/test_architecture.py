"""The shape of ``simulator/``: layered packages, one-way imports, a core free of ray and torch.

The import graph is read from the AST of every module (nothing is imported): each ``import`` and
``from ... import`` of ``simulator.*``, at module level and inside functions (a lazy import is
still a dependency), inside ``if TYPE_CHECKING:`` too (a type is a dependency). ``from simulator.pkg
import name`` points at ``simulator.pkg.name`` when that is a module, else at ``simulator.pkg``; a
package's ``__init__.py`` is the package. Late binding through strings (the registries'
``"module:attribute"`` targets, ``importlib.import_module``) is not an import and is not counted.

Layers, lowest first (``LAYERS``): a module may import its own package and any lower layer, never
a higher one. The top-level ``simulator/__init__.py`` is exempt (it may re-export anything lazily),
and its lazy (function-level) imports are left out of the cycle check for the same reason.

Every check is a function of a root directory, so the self-tests below run it on a scratch tree
with a deliberate cycle, upward import, torch import and crowded top level, and watch it fail.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "simulator"

# Lowest first. A module sits in the layer named by its first component under ``simulator``.
LAYERS = (
    "errors", "core", "io", "fleet", "config", "data", "planning", "selection", "aggregation",
    "privacy", "workloads", "execution", "loop", "sweep", "cli", "api",
)

HEAVY = ("torch", "ray", "transformers", "peft")
# Where a module-level import of a HEAVY library is allowed (paths relative to the repo root; a
# trailing "/" is a whole package). sweep/tune.py drives Ray Tune; the CLI imports its
# subcommands lazily and needs no entry here today.
HEAVY_ALLOWED = ("simulator/workloads/", "simulator/execution/", "simulator/sweep/tune.py")

# What `import simulator` plus the core modules must load without pulling in torch or ray.
CORE_MODULES = (
    "simulator", "simulator.config.scenario", "simulator.loop.simulation",
    "simulator.core.registry", "simulator.aggregation", "simulator.selection",
    "simulator.planning", "simulator.privacy", "simulator.fleet.population",
    "simulator.io.recording",
)

MAX_TOP_LEVEL_MODULES = 12


# --- the graph ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Edge:
    src: str  # importing module, dotted
    dst: str  # imported module, dotted
    path: str  # importing file, relative to the root's parent ("simulator/x/y.py")
    line: int
    lazy: bool  # inside a function
    type_only: bool = False  # under ``if TYPE_CHECKING:``


def module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file for every ``.py`` under ``root`` (the package directory)."""
    out: dict[str, Path] = {}
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is a module (``a.b.attr`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


class _Imports(ast.NodeVisitor):
    def __init__(self, mod: str, is_pkg: bool, modules: dict[str, Path], pkg: str) -> None:
        self.mod, self.modules, self.pkg = mod, modules, pkg
        self.base = mod if is_pkg else mod.rpartition(".")[0]  # for relative imports
        self.depth = 0
        self.type_checking = 0
        self.found: list[tuple[str, int, bool, bool]] = []  # (target, line, lazy, type_only)

    def _add(self, name: str, line: int) -> None:
        if name != self.pkg and not name.startswith(self.pkg + "."):
            return
        target = _resolve(name, self.modules)
        if target is not None and target != self.mod:
            self.found.append((target, line, self.depth > 0, self.type_checking > 0))

    def visit_FunctionDef(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.type_checking += 1
        for stmt in node.body:
            self.visit(stmt)
        self.type_checking -= 1
        for stmt in node.orelse:
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.base.split(".")
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            mod = ".".join(base + ([node.module] if node.module else []))
        else:
            mod = node.module or ""
        for alias in node.names:
            sub = f"{mod}.{alias.name}"
            self._add(sub if sub in self.modules else mod, node.lineno)


def import_graph(root: Path) -> list[Edge]:
    """Every import of the package at ``root`` by one of its own modules, as edges."""
    modules = module_files(root)
    pkg = root.name
    edges: list[Edge] = []
    for mod, f in modules.items():
        v = _Imports(mod, f.name == "__init__.py", modules, pkg)
        v.visit(ast.parse(f.read_text(encoding="utf-8"), filename=str(f)))
        rel = f.relative_to(root.parent).as_posix()
        edges += [Edge(mod, dst, rel, line, lazy, tc) for dst, line, lazy, tc in v.found]
    return edges


# --- cycles -------------------------------------------------------------------------------------
def _sccs(nodes: set[str], adj: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[set[str]] = []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(adj.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(adj.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == node:
                        break
                out.append(comp)
    return out


def _shortest_cycle(start: str, adj: dict[str, set[str]], comp: set[str]) -> list[str]:
    """The shortest cycle through ``start`` inside its component (breadth first)."""
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(adj.get(node, ())):
                if nxt not in comp:
                    continue
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if nxt not in prev:
                    prev[nxt] = node
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return []  # pragma: no cover - every node of a component of 2+ lies on a cycle


def find_cycles(edges: list[Edge], top: str = PACKAGE, limit: int = 50) -> list[list[str]]:
    """Elementary import cycles, each as ``[a, b, ..., a]`` starting at its smallest module,
    shortest first. At most ``limit`` per strongly connected component are enumerated; past that,
    the shortest cycle through each module not yet on one is added, so every module on a cycle is
    named. The top-level package's lazy imports are left out."""
    adj: dict[str, set[str]] = {}
    for e in edges:
        if e.src == top and e.lazy:
            continue
        adj.setdefault(e.src, set()).add(e.dst)
    nodes = set(adj) | {d for ds in adj.values() for d in ds}
    cycles: list[list[str]] = []
    for comp in _sccs(nodes, adj):
        if len(comp) < 2:
            continue
        found: list[list[str]] = []

        def dfs(path: list[str], comp: set[str] = comp, found: list[list[str]] = found) -> None:
            start = path[0]
            for nxt in sorted(adj.get(path[-1], ())):
                if len(found) >= limit or nxt not in comp:
                    continue
                if nxt == start:
                    found.append([*path, start])
                elif nxt > start and nxt not in path:  # each cycle once, from its smallest node
                    dfs([*path, nxt])

        for start in sorted(comp):
            dfs([start])
        covered = {m for c in found for m in c}
        for node in sorted(comp - covered):
            c = _shortest_cycle(node, adj, comp)
            i = c.index(min(c[:-1]))
            c = c[i:-1] + c[:i] + [c[i]]  # rotate to start at the smallest module
            if c not in found:
                found.append(c)
            covered.update(c)
        cycles += sorted(found, key=lambda c: (len(c), c))
    return cycles


def describe_cycle(cycle: list[str], edges: list[Edge]) -> str:
    where: dict[tuple[str, str], str] = {}
    for e in edges:
        how = " lazy" if e.lazy else " type-only" if e.type_only else ""
        where.setdefault((e.src, e.dst), f"{e.path}:{e.line}{how}")
    hops = ", ".join(where[hop] for hop in itertools.pairwise(cycle))
    return f"{' -> '.join(cycle)}  ({hops})"


# --- layers -------------------------------------------------------------------------------------
def layer_of(mod: str, top: str = PACKAGE) -> str | None:
    """``simulator.loop.sync`` -> ``loop``; the top-level package itself -> None."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == top else None


def layer_violations(edges: list[Edge], root: Path, layers: tuple[str, ...] = LAYERS) -> list[str]:
    """One readable line per upward import, and per module that is in no layer."""
    top = root.name
    rank = {name: i for i, name in enumerate(layers)}
    out: list[str] = []
    for mod, f in module_files(root).items():
        lay = layer_of(mod, top)
        if lay is not None and lay not in rank:
            out.append(f"{f.relative_to(root.parent).as_posix()} is in no layer ('{lay}' is not "
                       f"in LAYERS: {', '.join(layers)})")
    for e in edges:
        src, dst = layer_of(e.src, top), layer_of(e.dst, top)
        if src is None or dst is None or src == dst or src not in rank or dst not in rank:
            continue  # the top-level package (exempt either way), own package, or reported above
        if rank[dst] > rank[src]:
            how = "lazily " if e.lazy else "for typing " if e.type_only else ""
            out.append(f"{e.path}:{e.line} {how}imports {e.dst} (layer '{dst}' #{rank[dst]} is "
                       f"above '{src}' #{rank[src]})")
    return out


# --- heavy libraries ----------------------------------------------------------------------------
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _module_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements that run at import time: the body, into if/try/with/class but not defs, and not
    into ``if TYPE_CHECKING:``."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        out.append(node)
        if isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _module_level(node.body)
            out += _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _module_level(node.body + node.orelse + node.finalbody)
            for h in node.handlers:
                out += _module_level(h.body)
        elif isinstance(node, (ast.With, ast.ClassDef, ast.For, ast.While)):
            out += _module_level(node.body)
    return out


def heavy_imports(root: Path, allowed: tuple[str, ...] = HEAVY_ALLOWED) -> list[str]:
    """Module-level imports of torch/ray/transformers/peft outside the allowed places."""
    out: list[str] = []
    for f in module_files(root).values():
        rel = f.relative_to(root.parent).as_posix()
        if any(rel == a or (a.endswith("/") and rel.startswith(a)) for a in allowed):
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in _module_level(tree.body):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            for n in names:
                if n.split(".")[0] in HEAVY:
                    out.append(f"{rel}:{node.lineno} imports {n} at module level")
    return out


def heavy_loaded(modules: tuple[str, ...], path: Path = ROOT) -> dict[str, object]:
    """Import ``modules`` in a fresh interpreter (``path`` first on sys.path); which of torch and
    ray ended up in sys.modules, and who imported them (first importer seen)."""
    code = textwrap.dedent(f"""
        import builtins, json, sys
        first = {{}}
        real = builtins.__import__
        def spy(name, globals=None, locals=None, fromlist=(), level=0):
            top = name.split(".")[0]
            if top in ("torch", "ray") and top not in first and top not in sys.modules:
                first[top] = (globals or {{}}).get("__name__", "?")
            return real(name, globals, locals, fromlist, level)
        builtins.__import__ = spy
        for m in {list(modules)!r}:
            __import__(m)
        print(json.dumps({{"loaded": [m for m in ("torch", "ray") if m in sys.modules],
                          "by": first}}))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=path, env=env, timeout=120)
    assert proc.returncode == 0, f"importing the core failed:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def top_level_modules(root: Path) -> list[str]:
    return sorted(f.name for f in root.glob("*.py"))


# --- the tests on simulator/ --------------------------------------------------------------------
SIM = ROOT / PACKAGE


def test_no_import_cycles() -> None:
    edges = import_graph(SIM)
    cycles = find_cycles(edges)
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s) in {PACKAGE}/:\n" + "\n".join(
            describe_cycle(c, edges) for c in cycles), pytrace=False)


def test_no_upward_imports() -> None:
    bad = layer_violations(import_graph(SIM), SIM)
    if bad:
        pytest.fail(f"{len(bad)} import(s) against the layer order ({' < '.join(LAYERS)}):\n"
                    + "\n".join(bad), pytrace=False)


def test_core_imports_no_heavy_libraries_at_module_level() -> None:
    bad = heavy_imports(SIM)
    if bad:
        pytest.fail(f"{', '.join(HEAVY)} belong in {', '.join(HEAVY_ALLOWED)} (or inside a "
                    "function):\n" + "\n".join(bad), pytrace=False)


def test_core_loads_without_torch_or_ray() -> None:
    got = heavy_loaded(CORE_MODULES)
    assert not got["loaded"], (f"importing the core loaded {got['loaded']} "
                               f"(first import by {got['by']})")


def test_top_level_is_small() -> None:
    mods = top_level_modules(SIM)
    assert len(mods) <= MAX_TOP_LEVEL_MODULES, (
        f"{PACKAGE}/ holds {len(mods)} top-level modules (at most {MAX_TOP_LEVEL_MODULES}: the "
        f"public API and subpackages): {', '.join(mods)}")


def test_every_layer_exists() -> None:
    """LAYERS names real packages (a renamed package would silently escape the layer check)."""
    present = {layer_of(m) for m in module_files(SIM)} - {None}
    missing = [lay for lay in LAYERS if lay not in present]
    assert not missing, f"LAYERS names {missing}, which are not under {PACKAGE}/"


# --- self-tests: each check fails on a tree built to break it -----------------------------------
def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text), encoding="utf-8")
    return tmp / PACKAGE


BAD_TREE = {
    "simulator/__init__.py": """
        from simulator.errors import E
        def __getattr__(name):
            from simulator import api  # lazy re-export: exempt
            return getattr(api, name)
    """,
    "simulator/errors.py": "class E(Exception): ...\n",
    "simulator/api.py": "from simulator.loop import sim\n",
    "simulator/core/__init__.py": "",
    "simulator/core/rng.py": """
        from simulator import __version__  # the top-level package: allowed
        def f():
            from simulator.loop.sim import run  # lazy, still upward
    """,
    "simulator/selection/__init__.py": "from simulator.selection.base import Selector\n",
    "simulator/selection/base.py": "from simulator.data import shards\nSelector = object\n",
    "simulator/data/__init__.py": "",
    "simulator/data/shards.py": """
        from .. import selection  # relative, resolves to simulator.selection
        import simulator.core.rng
    """,
    "simulator/loop/__init__.py": "",
    "simulator/loop/sim.py": """
        from typing import TYPE_CHECKING
        import numpy
        from . import helpers
        if TYPE_CHECKING:
            import torch  # not at run time
            from simulator.errors import E  # type-only: still an edge
        try:
            import ray
        except ImportError:
            ray = None
        def run():
            import torch  # lazy: fine
    """,
    "simulator/loop/helpers.py": "from simulator.loop.sim import run\n",
    "simulator/workloads/__init__.py": "import torch\n",
    "simulator/gadgets/__init__.py": "",
}


def test_graph_builder_resolves_imports(tmp_path: Path) -> None:
    edges = import_graph(_tree(tmp_path, BAD_TREE))
    got = {(e.src, e.dst, e.lazy) for e in edges}
    assert ("simulator.data.shards", "simulator.selection", False) in got  # relative
    assert ("simulator.data.shards", "simulator.core.rng", False) in got
    assert ("simulator.loop.sim", "simulator.loop.helpers", False) in got  # from . import module
    assert ("simulator.core.rng", "simulator.loop.sim", True) in got  # lazy, name -> module
    assert ("simulator.core.rng", "simulator", False) in got
    assert ("simulator", "simulator.api", True) in got
    assert ("simulator.selection", "simulator.selection.base", False) in got
    typed = [e for e in edges if e.type_only]
    assert [(e.src, e.dst) for e in typed] == [("simulator.loop.sim", "simulator.errors")]


def test_cycle_check_fails_on_a_cycle(tmp_path: Path) -> None:
    edges = import_graph(_tree(tmp_path, BAD_TREE))
    cycles = find_cycles(edges)
    assert ["simulator.loop.helpers", "simulator.loop.sim", "simulator.loop.helpers"] in cycles
    assert ["simulator.data.shards", "simulator.selection", "simulator.selection.base",
            "simulator.data.shards"] in cycles
    # The top-level package's lazy api import would close simulator -> api -> loop.sim -> ... ->
    # core.rng -> simulator; it is exempt, so no cycle goes through "simulator".
    assert not any(PACKAGE in c for c in cycles)
    text = describe_cycle(cycles[0], edges)
    assert " -> " in text and "simulator/loop/helpers.py:1" in text


def test_layer_check_fails_on_an_upward_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, BAD_TREE)
    bad = layer_violations(import_graph(root), root)
    joined = "\n".join(bad)
    assert ("simulator/core/rng.py:4 lazily imports simulator.loop.sim (layer 'loop' #12 is above "
            "'core' #1)") in joined
    assert "simulator/selection/base.py:1 imports simulator.data.shards" not in joined  # downward
    assert "simulator/data/shards.py:2 imports simulator.selection (layer 'selection'" in joined
    assert "simulator/gadgets/__init__.py is in no layer" in joined
    assert not any(line.startswith("simulator/__init__.py") for line in bad)  # exempt
    assert not any("imports simulator (" in line for line in bad)  # the top-level package


def test_heavy_check_fails_on_a_torch_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, BAD_TREE)
    bad = heavy_imports(root)
    assert bad == ["simulator/loop/sim.py:9 imports ray at module level"]
    assert len(heavy_imports(root, allowed=())) == 2  # workloads/ once allowed no more


def test_subprocess_check_sees_torch(tmp_path: Path) -> None:
    _tree(tmp_path, {"torch.py": "", "fake_core/__init__.py": "from fake_core import inner\n",
                     "fake_core/inner.py": "import torch\n"})
    got = heavy_loaded(("fake_core",), path=tmp_path)
    assert got["loaded"] == ["torch"] and got["by"] == {"torch": "fake_core.inner"}


def test_top_level_check_fails_when_crowded(tmp_path: Path) -> None:
    root = _tree(tmp_path, {f"simulator/m{i:02d}.py": "" for i in range(13)})
    assert len(top_level_modules(root)) == 13 > MAX_TOP_LEVEL_MODULES


def test_a_run_imports_neither_pandas_nor_sklearn(tmp_path: Path) -> None:
    """Issue 15: no heavy import on the critical path that is not needed. Writing and reading
    the run's parquet tables goes through pyarrow alone (``pa.array`` and ``pq.read_table``
    would import pandas: 0.3 s, more than the quickstart's 30 rounds), and digits are read
    without scikit-learn. Fails if either comes back."""
    code = textwrap.dedent(f"""
        import sys
        from simulator.cli.progress import summary_lines
        from simulator.config.scenario import load_scenario
        from simulator.loop.runner import run_scenario
        sc = load_scenario({str(ROOT / "scenarios" / "quickstart.yaml")!r},
                           overrides={{"rounds": 3, "executor.kind": "local"}})
        out = run_scenario(sc, name="q", runs_dir={str(tmp_path)!r})
        assert summary_lines(out)
        print(sorted(m for m in ("pandas", "sklearn") if m in sys.modules))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_arrow_columns_from_buffers_equal_pa_array() -> None:
    """simulator/io/recording.py wraps numpy buffers instead of calling ``pa.array``: the same
    arrays, types and nulls, NaN kept as a value."""
    import numpy as np
    import pyarrow as pa

    from simulator.io.recording import _to_arrow

    cases = [
        (np.array([1.5, np.nan, -0.0, 3e300]), pa.float64()),
        (np.array([1, 2, -3], np.int64), pa.int64()),
        (np.array([1, 2, 3], np.int64), None),
        (np.array([1, 2, 3], np.int32), pa.int64()),  # a cast: through pa.array
        (np.array([True, False, True] * 5), None),
        (np.array(["cpu", "lora r8", None, "é"], dtype=object), pa.string()),
        (np.array(["a", "bb"], dtype=object), None),
        (np.zeros(0), pa.int64()),
    ]
    for values, typ in cases:
        got = _to_arrow(values, typ)
        want = (pa.array(values.tolist(), type=typ or pa.string()) if values.dtype == object
                else pa.array(values, type=typ) if typ is not None else pa.array(values))
        assert got.type == want.type and got.null_count == want.null_count, (values, typ)
        assert got.equals(want) or (got.to_pylist() == want.to_pylist()) or np.array_equal(
            np.asarray(got), np.asarray(want), equal_nan=True), (values, typ)
