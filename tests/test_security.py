"""Security: user files are data, never code.

* YAML goes through ``yaml.safe_load`` only: a ``!!python/...`` tag is a one-line error;
* no pickle / eval / exec / unsafe loaders on user files anywhere in the engine or dashboards
  (source scan), except the restricted unpickler in simulator/io/safe_pickle.py, which resolves
  no globals;
* ``torch.load`` only with ``weights_only=True``; numpy never with ``allow_pickle=True``;
* plugin classes are imported only when listed under the scenario's ``plugins:``;
* run names cannot leave the runs directory;
* the live dashboard binds 127.0.0.1 unless told otherwise;
* Ray's token authentication is never switched off.
"""

from __future__ import annotations

import ast
import functools
import io
import pickle
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from simulator import InputError
from simulator.cli.main import main
from simulator.config.scenario import (
    ScenarioError,
    load_scenario,
    parse_scenario,
    validate_run_name,
)
from tests.conftest import ROOT, small_doc

SOURCE_DIRS = ("simulator", "dashboards", "benchmarks")
THIS_FILE = Path(__file__).resolve()


def _sources(dirs: tuple[str, ...] = SOURCE_DIRS) -> list[Path]:
    return sorted(p for d in dirs if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


@functools.cache
def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines with comments and docstrings blanked (only code is scanned)."""
    text = path.read_text(encoding="utf-8")
    doc_lines: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            doc_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return [(i, line.split("#", 1)[0]) for i, line in enumerate(text.splitlines(), 1)
            if i not in doc_lines]


# --- YAML -----------------------------------------------------------------------------------------
PYTHON_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/new:os.system ['touch {marker}']",
    "!!python/object:__main__.Evil {{}}",
    "!!python/name:os.system",
    "!!python/module:os",
]


@pytest.mark.parametrize("tag", PYTHON_TAGS)
def test_python_yaml_tags_are_rejected(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       tag: str) -> None:
    marker = tmp_path / "pwned"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_doc()) + "description: " + tag.format(marker=marker) + "\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert len(err.value.lines) == 1 and "invalid YAML" in err.value.lines[0]
    capsys.readouterr()
    assert main(["validate", str(f)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fedfleet: error: "), lines
    assert not marker.exists()


def test_profiles_and_overrides_are_safe_loaded(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "pwned"
    pdir = tmp_path / "profiles"
    pdir.mkdir()
    (pdir / "evil.yaml").write_text(f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(small_doc(**{"population.profiles_dir": str(pdir)})))
    capsys.readouterr()
    assert main(["validate", str(f)]) == 2  # the profile's tag is refused: one line, naming it
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "evil.yaml" in err[0] and "invalid YAML" in err[0], err
    assert not marker.exists()
    (pdir / "evil.yaml").unlink()
    # A tag in --set is no YAML the safe loader takes: the value stays the literal text, a
    # harmless description, so validate accepts it (exit 0, exactly) and nothing runs.
    tagged = f"!!python/object/apply:os.system ['touch {marker}']"
    assert main(["validate", str(f), "--set", f"description={tagged}"]) == 0
    from simulator.cli.main import _load

    assert _load(str(f), [f"description={tagged}"]).description == tagged
    assert not marker.exists()


def test_only_safe_yaml_loaders_in_source() -> None:
    bad = re.compile(r"yaml\.(load|unsafe_load|full_load|load_all|unsafe_load_all)\(|"
                     r"Loader\s*=\s*(yaml\.)?(Loader|UnsafeLoader|FullLoader)")
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _sources()
            for i, line in _code_lines(p) if bad.search(line)]
    assert not hits, hits


# --- no code from data ----------------------------------------------------------------------------
DANGEROUS = re.compile(
    r"\bpickle\.loads?\(|\bcPickle\b|\bdill\.|\bcloudpickle\.loads?\(|\bjsonpickle\b|"
    r"\bmarshal\.loads?\(|\bshelve\.open\(|\bread_pickle\(|"
    r"(?<![\w.])eval\(|(?<![\w.])exec\(|(?<![\w.])compile\(|\bbuiltins\.(eval|exec)\b|"
    r"\bos\.system\(|\bos\.popen\(|shell\s*=\s*True|allow_pickle\s*=\s*True")


def test_no_pickle_eval_or_exec_of_user_files() -> None:
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in _sources()
            for i, line in _code_lines(p) if DANGEROUS.search(line)]
    assert not hits, "\n".join(hits)


def test_the_only_unpickler_resolves_no_globals() -> None:
    """traces.py reads FedScale pickles with SafeUnpickler: every global lookup is refused."""
    from simulator.fleet.traces import SafeUnpickler, safe_load_pickle

    users = [p for p in _sources() if "pickle.Unpickler" in p.read_text()]
    assert [p.name for p in users] == ["safe_pickle.py"]
    with pytest.raises(InputError):
        SafeUnpickler(io.BytesIO(b""), origin="x").find_class("os", "system")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    data = {"ok": [1, 2.5, "x", None, (True,)]}
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        good = Path(d) / "good.pkl"
        good.write_bytes(pickle.dumps(data))
        assert safe_load_pickle(good) == data
        evil = Path(d) / "evil.pkl"
        evil.write_bytes(pickle.dumps(Evil()))
        with pytest.raises(InputError, match="Python object"):
            safe_load_pickle(evil)


def _calls(text: str, func: str) -> list[str]:
    """Full source text of each ``func(...)`` call (balanced parentheses, may span lines)."""
    out = []
    for m in re.finditer(re.escape(func) + r"\(", text):
        depth, i = 0, m.end() - 1
        while i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
            i += 1
        out.append(text[m.start():i + 1])
    return out


def test_torch_load_only_with_weights_only() -> None:
    bad = []
    for p in _sources():
        code = "\n".join(line for _, line in _code_lines(p))
        for call in _calls(code, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", call):
                bad.append(f"{p.relative_to(ROOT)}: {call}")
    assert not bad, bad


def test_checkpoint_arrays_refuse_pickles() -> None:
    for p in _sources(("simulator",)):
        code = "\n".join(line for _, line in _code_lines(p))
        for call in _calls(code, "np.load"):
            assert re.search(r"allow_pickle\s*=\s*False", call), f"{p}: {call}"


# --- plugins --------------------------------------------------------------------------------------
SENTINEL = "fedfleet_never_imported_plugin"


@pytest.fixture
def sentinel_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real, importable plugin module that leaves a marker file when it is imported."""
    marker = tmp_path / "imported.marker"
    (tmp_path / f"{SENTINEL}.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('imported')\n"
        "class Selector:\n"
        "    def select(self, *a, **k): ...\n"
        "    def observe(self, *a, **k): ...\n"
        "    def state_dict(self): return {}\n"
        "    def load_state_dict(self, state): return state\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, SENTINEL, raising=False)
    return marker


def test_unlisted_plugin_is_refused_and_never_imported(sentinel_plugin: Path) -> None:
    doc = small_doc(**{"selection.policy": f"{SENTINEL}.Selector"})
    with pytest.raises(ScenarioError, match="not listed under plugins"):
        parse_scenario(doc)
    assert not sentinel_plugin.exists() and SENTINEL not in sys.modules
    # The control: the module is importable, and is imported once it is listed.
    path = f"{SENTINEL}.Selector"
    parse_scenario(small_doc(plugins=[path], **{"selection.policy": path}))
    assert sentinel_plugin.read_text() == "imported"


def test_selector_factory_checks_the_plugin_list() -> None:
    """Defence in depth: make_selector itself refuses a class path that is not listed."""
    from simulator.selection.base import make_selector

    sc = SimpleNamespace(selection=SimpleNamespace(policy="os.system"), plugins=())
    with pytest.raises(InputError, match="not listed under plugins"):
        make_selector(sc, None)  # type: ignore[arg-type]


def test_listed_plugin_is_loaded() -> None:
    from simulator.selection.base import make_selector
    from simulator.selection.random_policy import RandomSelector

    path = "simulator.selection.random_policy.RandomSelector"
    sc = parse_scenario(small_doc(plugins=[path], **{"selection.policy": path}))
    assert isinstance(make_selector(sc, None), RandomSelector)  # type: ignore[arg-type]


# --- run names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../x", "../../etc/cron.d/x", "/abs", "..", ".", "a/../../b",
                                  "a\\..\\b", "", "-x", "x\n", "\x00"])
def test_run_names_cannot_escape(name: str) -> None:
    with pytest.raises(InputError, match="--name"):
        validate_run_name(name)
    with pytest.raises(ScenarioError, match="name"):
        parse_scenario(small_doc(name=name))


# --- network exposure -----------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(pid: int, port: int, timeout_s: float = 60) -> list[str]:
    """The addresses process ``pid`` listens on at ``port`` (waits until it listens)."""
    import time

    import psutil

    proc = psutil.Process(pid)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        found = [c.laddr.ip for c in proc.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        if found:
            return found
        if proc.status() == psutil.STATUS_ZOMBIE or not proc.is_running():
            break
        time.sleep(0.2)
    return []


def test_live_dashboard_binds_localhost_by_default(tmp_path: Path) -> None:
    """`fedfleet serve` with no --host really listens on 127.0.0.1 only (issue 16: the old test
    read the defaults and never bound). Checked on the socket the server opened."""
    import subprocess

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli.main", "serve", str(tmp_path),
                             "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        addrs = _listening(proc.pid, port)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert addrs == ["127.0.0.1"], (addrs, out[-2000:])
    assert f"http://127.0.0.1:{port}/" in out and "token" not in out
    # the library's own default (used by the tests and the API) is loopback too
    from dashboards.app import start_server

    srv = start_server(tmp_path)
    try:
        assert srv.server.socket.getsockname()[0] == "127.0.0.1"
    finally:
        srv.stop()


def test_ray_token_auth_is_never_disabled() -> None:
    files = [p for p in ROOT.rglob("*") if p.is_file() and p.resolve() != THIS_FILE
             and ".git" not in p.parts and not any(part.startswith(".venv") for part in p.parts)
             and p.suffix in {".py", ".sh", ".yaml", ".yml", ".toml", ".cfg", ".ini", ""}
             and p.stat().st_size < 2_000_000]
    bad = re.compile(r"RAY_AUTH_MODE.{0,12}disabled|auth_mode.{0,6}disabled")
    for example in ('os.environ["RAY_AUTH_MODE"] = "disabled"', "RAY_AUTH_MODE=disabled ray start",
                    'env.setdefault("RAY_AUTH_MODE", "disabled")', "{'RAY_AUTH_MODE': 'disabled'}"):
        assert bad.search(example), example
    hits = []
    for p in files:
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        hits += [f"{p.relative_to(ROOT)}:{i}" for i, line in enumerate(text.splitlines(), 1)
                 if bad.search(line)]
    assert not hits, hits
