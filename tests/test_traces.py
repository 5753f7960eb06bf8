"""FedScale trace import: safe unpickling, validation, round trip, availability."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simulator import InputError
from simulator.fleet.traces import (
    SafeUnpickler,
    import_fedscale,
    load_trace_table,
    safe_load_pickle,
    trace_available,
)

CAPACITY = {
    3: {"computation": 120.5, "communication": 2500.0},
    1: {"computation": 40.0, "communication": 10000.0, "extra": "ignored", 7: 1.0},
    2: {"computation": 80, "communication": 500},
}
BEHAVIOR = {
    1: {"active": [0.0, 100.0], "inactive": [50.0, 150.0], "finish_time": 200.0,
        "duration": 100.0, "model": "Pixel 3"},
    2: {"active": [10], "inactive": [20], "finish_time": 40, "duration": 10},
    3: {"active": [], "inactive": [], "finish_time": 60.0},
}


def _dump(path: Path, obj: object) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return path


class _Payload:
    """Unpickling this would create a directory, proving code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.target),))


class _Custom:
    def __init__(self) -> None:
        self.x = 1


# --- safe unpickling -------------------------------------------------------------------------
def test_safe_load_plain_data(tmp_path: Path) -> None:
    data = {1: [1.5, 2, "a", None, True, (3, 4)], "k": {"n": b"x"}, "s": {1, 2}}
    assert safe_load_pickle(_dump(tmp_path / "p.pkl", data)) == data


def test_reduce_payload_is_refused_without_running(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    path = _dump(tmp_path / "evil.pkl", {1: {"computation": _Payload(target), "communication": 1}})
    with pytest.raises(InputError) as err:
        safe_load_pickle(path)
    assert not target.exists()
    assert err.value.field == str(path)
    assert "mkdir" in err.value.message and "only dicts, lists" in err.value.message
    with pytest.raises(InputError):
        import_fedscale(path, None, tmp_path / "out.parquet")
    assert not target.exists()
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.parametrize(
    "obj", [collections.OrderedDict(a=1), _Custom(), np.float64(1.0), Path("/x")],
    ids=["ordereddict", "custom-class", "numpy-scalar", "path"])
def test_objects_are_refused(tmp_path: Path, obj: object) -> None:
    with pytest.raises(InputError, match="contains a Python object of type"):
        safe_load_pickle(_dump(tmp_path / "o.pkl", {1: obj}))


def test_unpickler_class_refuses_globals(tmp_path: Path) -> None:
    import io

    payload = pickle.dumps(collections.OrderedDict(a=1))
    with pytest.raises(InputError, match="collections.OrderedDict"):
        SafeUnpickler(io.BytesIO(payload), origin="mem").load()


def test_truncated_corrupt_missing(tmp_path: Path) -> None:
    good = pickle.dumps(CAPACITY)
    trunc = tmp_path / "trunc.pkl"
    for cut in range(1, len(good)):  # every possible truncation point
        trunc.write_bytes(good[:cut])
        with pytest.raises(InputError, match="truncated|corrupt") as err:
            safe_load_pickle(trunc)
        assert err.value.field == str(trunc)
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="truncated"):
        safe_load_pickle(trunc)
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="truncated"):
        safe_load_pickle(empty)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle at all\n")
    with pytest.raises(InputError, match="corrupt"):
        safe_load_pickle(junk)
    with pytest.raises(InputError, match="not found"):
        safe_load_pickle(tmp_path / "nope.pkl")
    with pytest.raises(InputError, match="directory"):
        safe_load_pickle(tmp_path)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied(tmp_path: Path) -> None:
    path = _dump(tmp_path / "locked.pkl", CAPACITY)
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="permission denied"):
            safe_load_pickle(path)
    finally:
        path.chmod(0o600)


# --- import + round trip ---------------------------------------------------------------------
def test_round_trip_capacity_and_behavior(tmp_path: Path) -> None:
    cap = _dump(tmp_path / "cap.pkl", CAPACITY)
    beh = _dump(tmp_path / "beh.pkl", BEHAVIOR)
    out = tmp_path / "fleet.parquet"
    summary = import_fedscale(str(cap), str(beh), str(out))
    assert summary == {"clients": 3, "with_behavior": True, "behavior_join": "id",
                       "median_ms_per_sample": 80.0, "median_kbit_per_s": 2500.0}
    schema = pq.read_schema(out)
    assert schema.field("client_id").type == pa.int64()
    assert schema.field("ms_per_sample").type == pa.float64()
    assert schema.field("active_start_s").type == pa.list_(pa.float64())
    df = load_trace_table(out)
    assert df["client_id"].tolist() == [1, 2, 3]
    assert df["ms_per_sample"].tolist() == [40.0, 80.0, 120.5]
    assert df["kbit_per_s"].tolist() == [10000.0, 500.0, 2500.0]
    assert [a.tolist() for a in df["active_start_s"]] == [[0.0, 100.0], [10.0], []]
    assert [a.tolist() for a in df["active_end_s"]] == [[50.0, 150.0], [20.0], []]
    assert df["period_s"].tolist() == [200.0, 40.0, 60.0]
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_capacity_only(tmp_path: Path) -> None:
    out = tmp_path / "cap.parquet"
    summary = import_fedscale(_dump(tmp_path / "c.pkl", {"5": {"computation": 1.0,
                                                               "communication": 2.0}}), None, out)
    assert summary["clients"] == 1 and summary["with_behavior"] is False
    df = load_trace_table(out)
    assert list(df.columns) == ["client_id", "ms_per_sample", "kbit_per_s"]
    assert df["client_id"].tolist() == [5]


def test_behavior_modulo_join_like_fedscale(tmp_path: Path) -> None:
    cap = {i: {"computation": 1.0, "communication": 1.0} for i in range(4)}
    beh = {10: {"active": [0], "inactive": [1], "finish_time": 5},
           20: {"active": [2], "inactive": [3], "finish_time": 5}}
    out = tmp_path / "m.parquet"
    s = import_fedscale(_dump(tmp_path / "c.pkl", cap), _dump(tmp_path / "b.pkl", beh), out)
    assert s["behavior_join"] == "modulo"
    df = load_trace_table(out)
    # client i gets trace keys[i % 2] in dict order: 10, 20, 10, 20
    assert [a.tolist() for a in df["active_start_s"]] == [[0.0], [2.0], [0.0], [2.0]]


def test_trace_ending_online_runs_to_finish_time_and_is_clipped(tmp_path: Path) -> None:
    cap = {1: {"computation": 1.0, "communication": 1.0},
           2: {"computation": 1.0, "communication": 1.0}}
    beh = {1: {"active": [0, 30], "inactive": [10], "finish_time": 50},
           2: {"active": [0, 45, 60], "inactive": [10, 55, 80], "finish_time": 50}}
    out = tmp_path / "o.parquet"
    import_fedscale(_dump(tmp_path / "c.pkl", cap), _dump(tmp_path / "b.pkl", beh), out)
    df = load_trace_table(out)
    assert [a.tolist() for a in df["active_start_s"]] == [[0.0, 30.0], [0.0, 45.0]]
    assert [a.tolist() for a in df["active_end_s"]] == [[10.0, 50.0], [10.0, 50.0]]


@pytest.mark.parametrize(
    ("capacity", "needle"),
    [
        ({1: {"computation": -3.0, "communication": 1.0}}, "client 1: 'computation'"),
        ({2: {"computation": 1.0, "communication": float("nan")}}, "client 2: 'communication'"),
        ({3: {"computation": 1.0, "communication": 0}}, "positive"),
        ({4: {"computation": "fast", "communication": 1.0}}, "must be a number"),
        ({5: {"computation": True, "communication": 1.0}}, "must be a number"),
        ({6: {"communication": 1.0}}, "missing field 'computation'"),
        ({7: [1, 2]}, "expected a dict"),
        ({-1: {"computation": 1.0, "communication": 1.0}}, "non-negative"),
        ({1: {"computation": 1.0, "communication": 1.0},
          "1": {"computation": 1.0, "communication": 1.0}}, "appears twice"),
        ([1, 2, 3], "non-empty dict"),
        ({}, "non-empty dict"),
    ],
)
def test_bad_capacity_values(tmp_path: Path, capacity: object, needle: str) -> None:
    out = tmp_path / "bad.parquet"
    cap = _dump(tmp_path / "cap.pkl", capacity)
    with pytest.raises(InputError, match=needle.replace("(", r"\(")) as err:
        import_fedscale(cap, None, out)
    assert err.value.field == str(cap)
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


@pytest.mark.parametrize(
    ("trace", "needle"),
    [
        ({"active": [-5.0], "inactive": [1.0]}, "non-negative"),
        ({"active": [5.0], "inactive": [1.0]}, "ends before it starts"),
        ({"active": [0, 5], "inactive": [10, 20]}, "sorted and must not overlap"),
        ({"active": [0, "x"], "inactive": [1, 2]}, "only numbers"),
        ({"active": [0, 1, 2], "inactive": [1]}, "'inactive' has 1"),
        ({"active": [0]}, "missing field 'inactive'"),
        ({"active": [0], "inactive": [1], "finish_time": -1}, "finish_time"),
        ({"active": [0], "inactive": [float("inf")]}, "finite"),
    ],
)
def test_bad_behavior_values(tmp_path: Path, trace: dict, needle: str) -> None:
    cap = _dump(tmp_path / "cap.pkl", {9: {"computation": 1.0, "communication": 1.0}})
    beh = _dump(tmp_path / "beh.pkl", {9: trace})
    out = tmp_path / "bad.parquet"
    with pytest.raises(InputError, match=needle) as err:
        import_fedscale(cap, beh, out)
    assert err.value.field == str(beh) and "client 9" in err.value.message
    assert not out.exists()


def test_failed_import_keeps_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "fleet.parquet"
    import_fedscale(_dump(tmp_path / "c.pkl", CAPACITY), None, out)
    before = out.read_bytes()
    bad = _dump(tmp_path / "bad.pkl", {1: {"computation": -1.0, "communication": 1.0}})
    with pytest.raises(InputError):
        import_fedscale(bad, None, out)
    assert out.read_bytes() == before
    with pytest.raises(InputError, match="output directory does not exist"):
        import_fedscale(_dump(tmp_path / "c2.pkl", CAPACITY), None, tmp_path / "no" / "x.parquet")


def test_load_trace_table_validation(tmp_path: Path) -> None:
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"client_id": [1, 2], "ms_per_sample": [1.0, 2.0]}), p)
    with pytest.raises(InputError, match="missing column.*kbit_per_s"):
        load_trace_table(p)
    pq.write_table(pa.table({"client_id": [1], "ms_per_sample": [1.0], "kbit_per_s": [-2.0]}), p)
    with pytest.raises(InputError, match="client 1: kbit_per_s"):
        load_trace_table(p)
    pq.write_table(pa.table({"client_id": [1], "ms_per_sample": [1.0], "kbit_per_s": [2.0],
                             "active_start_s": [[0.0]]}), p)
    with pytest.raises(InputError, match="together"):
        load_trace_table(p)
    pq.write_table(pa.table({"client_id": [1], "ms_per_sample": [1.0], "kbit_per_s": [2.0],
                             "active_start_s": [[5.0]], "active_end_s": [[1.0]]}), p)
    with pytest.raises(InputError, match="ends before"):
        load_trace_table(p)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match="not a readable parquet"):
        load_trace_table(tmp_path / "junk.parquet")
    with pytest.raises(InputError, match="not found"):
        load_trace_table(tmp_path / "missing.parquet")


# --- availability ----------------------------------------------------------------------------
def test_trace_available_hand_computed() -> None:
    starts = [[0.0, 100.0], [10.0], [], [5.0]]
    ends = [[50.0, 150.0], [20.0], [], [5.0]]  # last: zero-length interval, never online
    period = [200.0, 40.0, 60.0, np.nan]
    expect = {  # (t mod period) checked against [start, end)
        0.0: [True, False, False, False],
        5.0: [True, False, False, False],  # client 3's interval [5, 5) is empty
        10.0: [True, True, False, False],
        20.0: [True, False, False, False],  # half-open: offline at the instant it ends
        49.9: [True, False, False, False],  # 49.9 mod 40 = 9.9
        50.0: [False, True, False, False],  # 50 mod 40 = 10
        120.0: [True, False, False, False],  # 120 mod 40 = 0
        150.0: [False, False, False, False],  # 150 mod 40 = 30
        210.0: [True, True, False, False],  # 210 mod 200 = 10; 210 mod 40 = 10
    }
    for t, want in expect.items():
        got = trace_available(starts, ends, t, period)
        assert got.tolist() == want, t


def test_trace_available_without_period_does_not_repeat() -> None:
    starts, ends = [[0.0, 100.0]], [[50.0, 150.0]]
    assert trace_available(starts, ends, 120.0).tolist() == [True]
    assert trace_available(starts, ends, 320.0).tolist() == [False]
    assert trace_available(starts, ends, 320.0, period_s=200.0).tolist() == [True]


def test_trace_available_on_loaded_table_and_arrow(tmp_path: Path) -> None:
    out = tmp_path / "fleet.parquet"
    import_fedscale(_dump(tmp_path / "c.pkl", CAPACITY), _dump(tmp_path / "b.pkl", BEHAVIOR), out)
    df = load_trace_table(out)
    got = trace_available(df["active_start_s"], df["active_end_s"], 215.0, df["period_s"])
    assert got.tolist() == [True, True, False]  # 215 mod 200 = 15 in [0, 50); 215 mod 40 = 15
    table = pq.read_table(out)
    got2 = trace_available(table.column("active_start_s"), table.column("active_end_s"), 215.0,
                           table.column("period_s").to_numpy())
    assert got2.tolist() == got.tolist()


def test_permission_error_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same as above but works as root too: the OS error is simulated."""
    import simulator.io.safe_pickle as traces

    def denied(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(traces, "open", denied, raising=False)
    with pytest.raises(InputError, match="permission denied"):
        safe_load_pickle(_dump(tmp_path / "p.pkl", CAPACITY))


def test_write_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace onto a directory fails after the temp file was written
    with pytest.raises(InputError, match="cannot write output") as err:
        import_fedscale(_dump(tmp_path / "c.pkl", CAPACITY), None, target)
    assert err.value.field == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pkl", "taken"]


# --- trace-driven fleets: population.trace (simulator/fleet/trace_fleet.py) ----------------------
def _write_trace(path, **cols):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(cols), str(path))
    return str(path)


def test_a_fleet_from_a_small_generated_trace(tmp_path):
    import pyarrow as pa

    from simulator.config.scenario import parse_scenario
    from simulator.loop.simulation import Simulation
    from tests.conftest import small_doc

    path = _write_trace(
        tmp_path / "fleet.parquet",
        train_flops_per_s=[1e9, 2e9, 4e9],
        downlink_bits_per_s=[10e6, 20e6, 40e6], uplink_bits_per_s=[1e6, 2e6, 4e6],
        latency_s=[0.05, 0.02, 0.01],
        active_start_s=pa.array([[0.0], [0.0, 7200.0], [3600.0]], pa.list_(pa.float64())),
        active_end_s=pa.array([[86400.0], [3600.0, 10800.0], [7200.0]], pa.list_(pa.float64())),
        period_s=[86400.0, 86400.0, float("nan")])
    sc = parse_scenario(small_doc(**{"mode": "analytic", "population.size": 7,
                                     "clients_per_round": 2, "population.trace": {"path": path}}))
    sim = Simulation(sc)
    pop = sim.pop
    row = np.arange(7) % 3
    assert pop.train_flops_per_s.tolist() == [1e9, 2e9, 4e9][:3] * 2 + [1e9]
    assert np.array_equal(pop.downlink_bits_per_s, np.array([10e6, 20e6, 40e6])[row])
    assert np.array_equal(pop.uplink_bits_per_s, np.array([1e6, 2e6, 4e6])[row])
    # availability from the intervals: row 0 always, row 1 in [0,1h) and [2h,3h), row 2 [1h,2h)
    on = pop.available(1800.0)
    assert on.tolist() == [True, True, False, True, True, False, True]
    assert pop.available(5400.0).tolist() == [True, False, True, True, False, True, True]
    assert np.array_equal(pop.available(5400.0, np.array([5, 1])), np.array([True, False]))
    assert pop.seconds_until_offline(1800.0, np.array([1]))[0] == pytest.approx(1800.0)
    assert pop.seconds_until_online(4000.0, np.array([1]))[0] == pytest.approx(3200.0)
    assert pop.seconds_until_online(8000.0, np.array([2]))[0] >= 1e9  # no repetition: never
    # and it runs
    from simulator.loop.runner import run_scenario

    run = run_scenario(sc, name="traced", runs_dir=str(tmp_path))
    assert (run / "rounds.parquet").exists()


def test_a_fedscale_trace_drives_compute_with_the_model_flops(tmp_path):
    from simulator.config.scenario import parse_scenario
    from simulator.loop.simulation import Simulation
    from tests.conftest import small_doc

    path = _write_trace(tmp_path / "fs.parquet", client_id=[0, 1], ms_per_sample=[10.0, 40.0],
                        kbit_per_s=[1000.0, 500.0])
    sc = parse_scenario(small_doc(**{"mode": "analytic", "population.size": 4,
                                     "clients_per_round": 2, "population.trace": {"path": path}}))
    pop = Simulation(sc).pop
    # small_doc's clock proxy: 2e9 FLOPs per sample; FedScale charges 3 x ms per sample
    assert pop.train_flops_per_s.tolist() == pytest.approx([2e9 / 0.03, 2e9 / 0.12] * 2)
    assert pop.uplink_bits_per_s.tolist() == [1e6, 5e5] * 2
    assert pop.downlink_bits_per_s.tolist() == [1e6, 5e5] * 2


def test_a_bad_trace_is_one_line_naming_the_field(tmp_path):
    from simulator import InputError
    from simulator.config.scenario import parse_scenario
    from simulator.loop.simulation import build_parts
    from tests.conftest import small_doc

    path = _write_trace(tmp_path / "bad.parquet", ms_per_sample=[1.0], uplink_bits_per_s=[1.0])
    sc = parse_scenario(small_doc(**{"mode": "analytic", "population.trace": {"path": path}}))
    with pytest.raises(InputError, match="population.trace.path") as err:
        build_parts(sc)
    assert "\n" not in str(err.value)
    sc = parse_scenario(small_doc(**{"population.trace": {"path": str(tmp_path / "none")}}))
    with pytest.raises(InputError, match="file not found"):
        build_parts(sc)
