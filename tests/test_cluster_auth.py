"""Joining a Ray cluster with token authentication (Ray 2.59+ turns it on for `ray start
--head`): a failed join is one line that says what to set. Hand-checked against a real
`ray start --head` (docs/cluster.md); here ray.init is replaced so no cluster is needed."""

import pytest

from simulator import FedFleetError
from simulator.execution import ray_pool


class FakeRay:
    def __init__(self, fail: bool):
        self.fail, self.calls = fail, []

    def init(self, **kw):
        self.calls.append(kw)
        if self.fail:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379")


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    return tmp_path


def test_join_passes_the_address_through(home):
    ray = FakeRay(fail=False)
    ray_pool.join_ray(ray, "10.0.0.1:6379", include_dashboard=False)
    assert ray.calls == [{"address": "10.0.0.1:6379", "include_dashboard": False}]


def test_token_on_this_machine_but_no_auth_mode_says_set_it(home):
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("abc")
    with pytest.raises(FedFleetError) as e:
        ray_pool.join_ray(FakeRay(fail=True), "10.0.0.1:6379")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("executor.address: the Ray cluster at 10.0.0.1:6379 cannot be joined")
    assert "rerun with RAY_AUTH_MODE=token" in msg and str(home / ".ray" / "auth_token") in msg


def test_wrong_token_says_check_it(home, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "wrong")
    with pytest.raises(FedFleetError, match=r"RAY_AUTH_MODE=token is set: check that the token "
                                            r"\(RAY_AUTH_TOKEN\) is the cluster's"):
        ray_pool.join_ray(FakeRay(fail=True), "10.0.0.1:6379")


def test_no_token_anywhere_explains_token_authentication(home):
    with pytest.raises(FedFleetError, match="set RAY_AUTH_MODE=token and give the cluster's token"):
        ray_pool.join_ray(FakeRay(fail=True), "10.0.0.1:6379")


def test_token_sources_follow_rays_precedence(home, monkeypatch):
    assert ray_pool.token_source() is None
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text("abc")
    assert ray_pool.token_source() == str(home / ".ray" / "auth_token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/secrets/ray")
    assert ray_pool.token_source() == "/secrets/ray"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "xyz")
    assert ray_pool.token_source() == "RAY_AUTH_TOKEN"
