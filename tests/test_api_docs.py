"""docs/api.md: every ```python block runs, in order, in one namespace, in a scratch directory.

The blocks are compiled with their line numbers in docs/api.md, so a failing example's traceback
points at the line of the page. The scratch directory holds a copy of ``scenarios/`` so the
examples can use ``scenarios/quickstart.yaml`` as they would from the repository root.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOC = ROOT / "docs" / "api.md"
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)


def code_blocks(text: str, lang: str = "python") -> list[tuple[int, str]]:
    """(first line of the code, 1-based, code) of every fenced block in ``lang``."""
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) == lang:
            out.append((text.count("\n", 0, m.start(2)) + 1, m.group(2)))
    return out


def run_blocks(blocks: list[tuple[int, str]], filename: str) -> dict[str, object]:
    ns: dict[str, object] = {"__name__": "api_docs"}
    for line, code in blocks:
        # Padding keeps tracebacks on docs/api.md's own line numbers.
        exec(compile("\n" * (line - 1) + code, filename, "exec"), ns)  # noqa: S102
    return ns


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    # The page registers a strategy and configures the "simulator" logger: undo both.
    from simulator.core.registry import STRATEGIES

    STRATEGIES.remove("my_fedavgm")
    lg = logging.getLogger("simulator")
    for h in list(lg.handlers):
        lg.removeHandler(h)
    lg.setLevel(logging.NOTSET)


def test_every_python_block_of_the_api_guide_runs(scratch: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    blocks = code_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 10, f"expected the guide's examples, found {len(blocks)} python blocks"
    ns = run_blocks(blocks, str(DOC))
    out = capsys.readouterr()
    # What the page says happens, happened: runs on disk where it says, in-memory runs nowhere.
    assert sorted(p.name for p in (scratch / "runs").iterdir()) == [
        "quickstart", "quickstart-oort", "tiny", "tiny-seed2"]
    assert "aggregation.params.beta" in out.out
    assert "INFO simulator.api: run tiny: 1 rounds" in out.err
    assert "fedavgm" in ns and "ServerMomentum" in ns


def test_blocks_are_found_with_their_lines_and_a_failing_one_points_at_the_page() -> None:
    text = "intro\n```python\nx = 1\n```\n\n```yaml\na: 1\n```\n```python\n\nassert x == 2\n```\n"
    blocks = code_blocks(text)
    assert blocks == [(3, "x = 1\n"), (10, "\nassert x == 2\n")]
    with pytest.raises(AssertionError) as info:
        run_blocks(blocks, "page.md")
    tb = info.traceback[-1]
    assert tb.path == Path("page.md") or str(tb.path) == "page.md"
    assert tb.lineno + 1 == 11  # pytest's lineno is 0-based: the assert is on line 11 of the page
