"""`fedfleet dashboard`: one run -> its dashboard; several runs -> a comparison."""

from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.loop.runner import run_scenario
from tests.conftest import small_doc


def test_dashboard_single_and_comparison(tmp_path, capsys):
    runs = [run_scenario(parse_scenario(small_doc(mode="analytic", seed=s)), name=f"r{s}",
                         runs_dir=str(tmp_path)) for s in (1, 2)]
    assert main(["dashboard", str(runs[0])]) == 0
    assert (runs[0] / "dashboard.html").stat().st_size > 100_000
    out = tmp_path / "cmp.html"
    argv = ["dashboard", str(runs[0]), str(runs[1]), "--labels", "a,b", "--out", str(out)]
    assert main(argv) == 0
    assert out.exists() and "plotly" in out.read_text()[:2_000_000]
    assert main(["dashboard", str(runs[0]), str(runs[1]), "--labels", "a"]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path / "missing")]) == 2
