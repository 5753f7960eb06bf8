"""docs/scenario.md is generated from the schema and must be current."""

import io
from contextlib import redirect_stdout

from simulator import scenario_doc
from tests.conftest import ROOT


def test_scenario_reference_is_current():
    buf = io.StringIO()
    with redirect_stdout(buf):
        scenario_doc.main()
    committed = (ROOT / "docs" / "scenario.md").read_text()
    assert buf.getvalue() == committed, "run: python -m simulator.scenario_doc > docs/scenario.md"


def test_every_shipped_scenario_validates():
    from simulator.scenario import load_scenario

    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        load_scenario(f)
