"""`fedfleet serve`: argument parsing and errors (the app itself: test_dashboard_browser)."""

from __future__ import annotations

import argparse
import threading
import urllib.request
from pathlib import Path

from simulator.cli import serve as serve_cli


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fedfleet")
    serve_cli.add_parser(p.add_subparsers(dest="command"))
    return p


def test_defaults_bind_localhost() -> None:
    args = _parser().parse_args(["serve"])
    assert (args.runs_dir, args.host, args.port) == ("runs", "127.0.0.1", 8050)
    assert callable(args.func)
    args = _parser().parse_args(["serve", "/x", "--port", "9000", "--host", "0.0.0.0"])
    assert (args.runs_dir, args.host, args.port) == ("/x", "0.0.0.0", 9000)


def test_registered_in_main_cli() -> None:
    from simulator.cli.main import build_parser

    args = build_parser().parse_args(["serve", "somewhere"])
    assert args.func is serve_cli.cmd_serve and args.runs_dir == "somewhere"


def test_missing_dir_and_bad_port_are_usage_errors(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    args = _parser().parse_args(["serve", str(tmp_path / "nope")])
    assert args.func(args) == 2
    assert "is not a directory" in capsys.readouterr().err
    args = _parser().parse_args(["serve", str(tmp_path), "--port", "70000"])
    assert args.func(args) == 2
    assert "--port" in capsys.readouterr().err


def test_port_in_use_is_a_usage_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        args = _parser().parse_args(["serve", str(tmp_path), "--port", str(port)])
        assert args.func(args) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_app_serves_layout(tmp_path: Path) -> None:
    from dashboards.app import start_server

    srv = start_server(tmp_path)
    try:
        assert isinstance(srv, threading.Thread)
        with urllib.request.urlopen(srv.url, timeout=10) as resp:
            assert resp.status == 200 and b"FedFleet" in resp.read()
        with urllib.request.urlopen(srv.url + "_dash-layout", timeout=10) as resp:
            assert b"run-list" in resp.read()
    finally:
        srv.stop()
