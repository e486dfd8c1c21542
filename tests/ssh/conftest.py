"""Fixtures for the SSH tests: real sshd instances on 127.0.0.1, an isolated EDGEKIT_HOME."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import run_cli

from .sshd import SSHServer, find_sshd, keygen


def pytest_collection_modifyitems(config, items):
    if find_sshd() is None:
        skip = pytest.mark.skip(
            reason="OpenSSH server not installed (bash scripts/setup.sh installs it as root)"
        )
        for item in items:
            if item.get_closest_marker("ssh") is not None:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def user_key(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("keys") / "id_ed25519")


@pytest.fixture(scope="session")
def wrong_key(tmp_path_factory):
    return keygen(tmp_path_factory.mktemp("wrongkeys") / "id_ed25519")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory, user_key):
    """One long-lived server shared by the tests that do not stop or re-key it."""
    server = SSHServer(tmp_path_factory.mktemp("sshd"), user_key.with_suffix(".pub")).start()
    yield server
    server.stop()


@pytest.fixture
def own_sshd(tmp_path, user_key):
    """A server of this test's own (for tests that stop it or change its host key)."""
    root = tmp_path / "sshd"
    root.mkdir()
    server = SSHServer(root, user_key.with_suffix(".pub")).start()
    yield server
    server.stop()


@pytest.fixture
def ek_env(tmp_path):
    """Environment for `run_cli`: an isolated EDGEKIT_HOME (inventory, results database)."""
    home = tmp_path / "ekhome"
    home.mkdir()
    return {"EDGEKIT_HOME": str(home), "EDGEKIT_CONFIG": "", "EDGEKIT_DB": str(home / "results.db")}


@pytest.fixture
def add_device(ek_env, user_key, tmp_path):
    """add_device(name, server, **flags): `edgekit devices add NAME --ssh ...` with the server's real key."""

    def add(name, server, *, identity=None, python=sys.executable, workdir=None, extra=()):
        args = [
            "devices",
            "add",
            name,
            "--ssh",
            server.address,
            "--identity",
            str(identity or user_key),
            "--host-key",
            server.host_key(),
            "--python",
            python,
            "--workdir",
            str(workdir or tmp_path / f"device {name}'s dir"),
            *extra,
            "--json",
        ]
        return run_cli(*args, env=ek_env)

    return add
