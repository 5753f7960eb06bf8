"""With dynamics off, the oracle estimates and a per-client split server, every shipped scenario
gives exactly its recorded golden tables: the static clock of earlier versions, bit for bit."""

import pytest

from tests.golden import tables as G

STATIC = {"dynamics.enabled": False, "estimates.mode": "oracle",
          "capacity.split_server": "per_client"}


@pytest.mark.parametrize("name", sorted(G.CASES))
def test_static_clock_reproduces_golden_tables(name, tmp_path, monkeypatch):
    monkeypatch.setitem(G.CASES, name, {**G.CASES[name], **STATIC})
    expected = G.load_hashes(G.STATIC_HASHES)[name]
    got = G.run_case(name, tmp_path)
    for table in ("rounds", "clients"):
        exp, now = expected[table], got[table]
        assert set(now) == set(exp), f"{name}/{table}: columns differ"
        moved = sorted(c for c in exp if not G.same_column(exp[c], now[c]))
        assert not moved, f"{name}/{table}: columns changed: {moved}"
