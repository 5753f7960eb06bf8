"""Joining a Ray cluster with token authentication (docs/cluster.md): a refused token is one line
that says what to set, exit 2, never a traceback. ray.init is replaced by one raising the
exception type the installed Ray raises (ray.exceptions.AuthenticationError)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli.main import main
from tests.conftest import small_doc

ray = pytest.importorskip("ray")
exceptions = pytest.importorskip("ray.exceptions")
if not hasattr(exceptions, "AuthenticationError"):
    pytest.skip("this Ray has no token authentication", allow_module_level=True)


@pytest.fixture(autouse=True)
def _no_token_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hint depends on this machine's token (tests/test_cluster_auth.py): none here."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)


def _refuse(message: str) -> Any:
    def init(*_a: Any, **_k: Any) -> None:
        raise exceptions.AuthenticationError(message)
    return init


@pytest.mark.parametrize("message", [
    "Token authentication is enabled but the authentication token is invalid or incorrect.",
    "Token authentication is enabled but no authentication token was found",
])
def test_a_refused_token_is_one_line_saying_what_to_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        message: str) -> None:
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", _refuse(message))
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump(small_doc(**{"executor.kind": "ray",
                                              "executor.address": "10.0.0.5:6379",
                                              "executor.num_actors": 1})))
    capsys.readouterr()
    rc = main(["run", str(sc), "--runs-dir", str(tmp_path / "runs"), "--no-dashboard"])
    lines = capsys.readouterr().err.splitlines()
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith("fedfleet: error: executor.address: "), lines
    assert "refused this driver's authentication token" in lines[0], lines[0]
    for needle in ("10.0.0.5:6379", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN", "ray get-auth-token",
                   "docs/cluster.md"):
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "runs").exists()


def test_grpc_unauthenticated_text_is_recognised() -> None:
    from simulator.execution.ray_pool import _is_auth_failure

    assert _is_auth_failure(ConnectionError("rpc failed: UNAUTHENTICATED: InvalidAuthToken"))
    assert not _is_auth_failure(ConnectionError("could not connect to 10.0.0.5:6379"))
