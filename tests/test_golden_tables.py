"""Golden tables: every shipped scenario, shortened, gives the recorded per-column hashes.

They are computed once per session, in a child process with numpy's SIMD dispatch pinned
(tests/golden/tables.py: SIMD_ENV), so that they are the same bits on every x86-64 machine.
Regenerate only after an intended change of behaviour (see tests/golden/tables.py)."""

import pytest

from tests.golden.tables import CASES, compute_all, load_hashes, same_column


@pytest.fixture(scope="module")
def computed():
    return compute_all(static=False)  # the static clock's child starts beside it


def test_every_shipped_scenario_has_a_case():
    from tests.golden.tables import ROOT

    shipped = {p.stem for p in (ROOT / "scenarios").glob("*.yaml")}
    assert shipped == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_tables(name, computed):
    expected = load_hashes()[name]
    got = computed[name]
    for table in ("rounds", "clients"):
        exp, now = expected[table], got[table]
        assert set(now) == set(exp), (f"{name}/{table}: columns added {sorted(set(now) - set(exp))}"
                                      f", removed {sorted(set(exp) - set(now))}")
        moved = sorted(c for c in exp if not same_column(exp[c], now[c]))
        assert not moved, f"{name}/{table}: columns changed: {moved}"
