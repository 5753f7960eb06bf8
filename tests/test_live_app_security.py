"""The live app is confined (issue 16 item 3): paths from the browser, remote hosts, gzip.

The callbacks are driven the way the browser drives them, by POSTs to /_dash-update-component,
through Flask's test client (no browser, no socket) and once over a real socket.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import small_doc


@pytest.fixture(scope="module")
def outside_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run in a folder the app does NOT serve."""
    import simulator

    d = tmp_path_factory.mktemp("private")
    simulator.run(small_doc(rounds=2, name="secret"), runs_dir=d)
    return d / "secret"


@pytest.fixture()
def served(tmp_path: Path, outside_run: Path) -> Path:
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(outside_run, runs / "mine")
    return runs


def _post(client: Any, output: str, inputs: list[dict[str, Any]],
          state: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
    outs = [o.split(".") for o in output.split("+")]  # "a.x+b.y": a multi-output callback
    outputs: Any = [{"id": i, "property": p} for i, p in outs]
    if len(outs) == 1:
        outputs = outputs[0]
    else:
        output = ".." + "...".join(f"{i}.{p}" for i, p in outs) + ".."
    body = {"output": output, "outputs": outputs, "inputs": inputs,
            "changedPropIds": [f"{inputs[0]['id']}.{inputs[0]['property']}"],
            "state": state or []}
    return client.post("/_dash-update-component", data=json.dumps(body),
                       content_type="application/json", **kw)


def _run_view(client: Any, path: str) -> Any:
    return _post(client, "run-head.children+run-view.children",
                 [{"id": "run-sig", "property": "data", "value": [path, "x"]}])


def test_a_run_inside_the_served_folder_is_shown(served: Path) -> None:
    from dashboards.app import make_app

    client = make_app(served).server.test_client()
    resp = _run_view(client, str(served / "mine"))
    assert resp.status_code == 200 and b"mine" in resp.data and b"panel-accuracy" in resp.data


@pytest.mark.parametrize("how", ["absolute", "dotdot", "symlink", "sibling"])
def test_run_sig_naming_a_dir_outside_runs_is_refused(served: Path, outside_run: Path,
                                                      how: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The hole of issue 16: a POST whose run-sig names a run outside runs/ got its data."""
    from dashboards.app import make_app

    if how == "absolute":
        value = str(outside_run)
    elif how == "dotdot":
        value = str(served) + "/" + os.path.relpath(outside_run, served)  # runs/../../x
    elif how == "symlink":
        (served / "link").symlink_to(outside_run)
        value = str(served / "link")
    else:  # a folder inside runs/ that is no run: runs/mine/.. is runs itself, runs/x/y/z deeper
        value = str(served / "mine" / "parts" / "deeper")
    client = make_app(served).server.test_client()
    with caplog.at_level(logging.WARNING, logger="fedfleet.serve"):
        resp = _run_view(client, value)
    assert resp.status_code == 403, resp.data[:200]
    assert b"secret" not in resp.data and b"panel-" not in resp.data
    assert any("refused a path from the browser" in r.getMessage() for r in caplog.records)


def test_every_callback_that_takes_a_path_is_confined(served: Path, outside_run: Path) -> None:
    from dashboards.app import make_app

    client = make_app(served).server.test_client()
    tick = {"id": "tick", "property": "n_intervals", "value": 1}
    # the signature check (stat of the files) ...
    resp = _post(client, "run-sig.data",
                 [{"id": "run-list", "property": "value", "value": str(outside_run)}, tick,
                  {"id": "tabs", "property": "value", "value": "run"}],
                 [{"id": "run-sig", "property": "data", "value": None}])
    assert resp.status_code == 403
    # ... the comparison's signature check and the comparison itself
    resp = _post(client, "compare-sig.data",
                 [{"id": "compare-select", "property": "value", "value": [str(outside_run)]},
                  {"id": "target", "property": "value", "value": None},
                  {"id": "tabs", "property": "value", "value": "compare"}, tick],
                 [{"id": "compare-sig", "property": "data", "value": None}])
    assert resp.status_code == 403
    resp = _post(client, "compare-view.children",
                 [{"id": "compare-sig", "property": "data",
                   "value": [None, [[str(served / "mine"), "x"], [str(outside_run), "x"]]]}])
    assert resp.status_code == 403 and b"secret" not in resp.data


def test_sweep_trials_inside_the_folder_are_allowed(served: Path) -> None:
    from dashboards.serving import Refused, confine

    sweep = served / "sw"
    (sweep / "t1").mkdir(parents=True)
    with pytest.raises(Refused):  # no sweep.json: not a sweep, so not a run
        confine(served, str(sweep / "t1"))
    (sweep / "sweep.json").write_text("{}")
    assert confine(served, str(sweep / "t1")) == (sweep / "t1").resolve()
    assert confine(served, "mine") == (served / "mine").resolve()
    for bad in ("", None, 3, ["mine"], str(served), "/etc", "mine\x00x"):
        with pytest.raises(Refused):
            confine(served, bad)


def test_responses_are_compressed(served: Path) -> None:
    from dashboards.app import make_app

    client = make_app(served).server.test_client()
    resp = _run_view(client, str(served / "mine"))
    plain = resp.data
    resp = _post(client, "run-head.children+run-view.children",
                 [{"id": "run-sig", "property": "data", "value": [str(served / "mine"), "x"]}],
                 headers={"Accept-Encoding": "gzip, deflate"})
    assert resp.headers.get("Content-Encoding") == "gzip"
    assert "Accept-Encoding" in resp.headers.get("Vary", "")
    assert gzip.decompress(resp.data) == plain and len(resp.data) < len(plain) / 3
    js = client.get("/_dash-layout", headers={"Accept-Encoding": "gzip"})
    assert js.headers.get("Content-Encoding") == "gzip"


def test_token_is_required_when_set(served: Path) -> None:
    from dashboards.app import start_server

    token = "t" * 24
    srv = start_server(served, token=token)
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(srv.url, timeout=10)
        assert err.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(srv.url + "?token=wrong", timeout=10)
        assert err.value.code == 401
        with urllib.request.urlopen(srv.url + f"?token={token}", timeout=10) as resp:
            assert resp.status == 200 and b"FedFleet" in resp.read()
            cookie = resp.headers["Set-Cookie"].split(";")[0]
        req = urllib.request.Request(srv.url + "_dash-layout", headers={"Cookie": cookie})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert b"run-list" in resp.read()
        req = urllib.request.Request(srv.url + "_dash-layout",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    finally:
        srv.stop()


def _serve_args(*argv: str) -> argparse.Namespace:
    from simulator.cli import serve as serve_cli

    p = argparse.ArgumentParser(prog="fedfleet")
    serve_cli.add_parser(p.add_subparsers(dest="command"))
    return p.parse_args(["serve", *argv])


def test_remote_host_needs_the_explicit_flag(served: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import dashboards.app

    called: list[dict[str, Any]] = []
    monkeypatch.setattr(dashboards.app, "serve",
                        lambda runs_dir, **kw: called.append(kw))
    monkeypatch.delenv("FEDFLEET_SERVE_TOKEN", raising=False)
    args = _serve_args(str(served), "--host", "0.0.0.0", "--port", "0")
    args.port = 38917
    assert args.func(args) == 2 and called == []
    err = capsys.readouterr().err
    assert "--allow-remote" in err and len(err.strip().splitlines()) == 1
    # with the flag: a warning, and a token is made and printed with the URL
    args = _serve_args(str(served), "--host", "0.0.0.0", "--allow-remote", "--port", "38917")
    assert args.func(args) == 0
    out, err = capsys.readouterr()
    assert "warning" in err and "other machines" in err
    assert called and called[0]["host"] == "0.0.0.0" and len(called[0]["token"]) >= 16
    assert f"?token={called[0]['token']}" in out
    # loopback: no token unless asked for
    called.clear()
    args = _serve_args(str(served), "--port", "38917")
    assert args.func(args) == 0 and called[0]["token"] is None
    # a short token is refused
    args = _serve_args(str(served), "--host", "0.0.0.0", "--allow-remote", "--token", "abc",
                       "--port", "38917")
    assert args.func(args) == 2 and "--token" in capsys.readouterr().err


def test_serve_refuses_a_remote_host_without_a_token(served: Path) -> None:
    from dashboards.app import serve

    with pytest.raises(ValueError, match="token"):
        serve(served, host="0.0.0.0", port=38918)
