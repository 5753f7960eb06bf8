"""docs/scenario.md is generated from the schema and must be current."""

import io
from contextlib import redirect_stdout

from simulator.config import reference as scenario_doc
from tests.conftest import ROOT


def test_scenario_reference_is_current():
    buf = io.StringIO()
    with redirect_stdout(buf):
        scenario_doc.main()
    committed = (ROOT / "docs" / "scenario.md").read_text()
    assert buf.getvalue() == committed, (
        "run: python -m simulator.config.reference > docs/scenario.md")


def test_every_shipped_scenario_validates():
    from simulator.config.scenario import load_scenario

    files = sorted((ROOT / "scenarios").glob("*.yaml"))
    assert len(files) >= 9
    for f in files:
        load_scenario(f)
