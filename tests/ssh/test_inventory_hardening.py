"""Inventory under stress (issue 15): concurrent writers, hostile names, a test login that fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_cli

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnwNsqcTtWt3KVmwnrQ/X93RryBP13WdEWAoJFUkTKH"


def test_parallel_adds_keep_every_entry(ek_env):
    """M6: eight `devices add` processes at once; before the lock, the file kept 3 to 6 of them."""
    n = 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edgekit", "devices", "add", f"dev{i}", "--local", "--json"],
            env={**os.environ, **ek_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * n, [err for _, err in outs]
    listed = json.loads(run_cli("devices", "list", "--json", env=ek_env).stdout)
    assert sorted(d["name"] for d in listed["devices"]) == sorted(f"dev{i}" for i in range(n))


def test_parallel_adds_of_one_name_keep_one(ek_env):
    """The same name added by four processes at once: one wins, the others are told it exists."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edgekit", "devices", "add", "same", "--local", "--python", f"py{i}"],
            env={**os.environ, **ek_env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2, 2, 2], outs
    assert all("already exists" in err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode)


@pytest.mark.parametrize(
    "address",
    ["-oProxyCommand=touch@127.0.0.1", "pi@-oProxyCommand=touch", "-l@host", "pi@-host:22"],
)
def test_names_starting_with_a_dash_are_refused(ek_env, address, tmp_path):
    """L3: a user or host name starting with `-` would reach ssh as an option: refused, nothing added."""
    proc = run_cli(
        "devices", "add", "pi", "--ssh", address, "--host-key", KEY, "--no-connect", env=ek_env, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "must not start with '-'" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ekhome" / "devices.toml").exists()


@pytest.mark.ssh
def test_a_failed_test_login_is_not_added(sshd, user_key, ek_env, tmp_path):
    """L3: ssh exits 255 on a user name it will not use ("invalid characters"): that is a failed login,
    not an added device."""
    user_addr = f"a;b@127.0.0.1:{sshd.port}"
    proc = run_cli(
        "devices", "add", "pi", "--ssh", user_addr, "--identity", str(user_key),
        "--host-key", sshd.host_key(), env=ek_env, check=False,
    )  # fmt: skip
    assert proc.returncode == 6, (proc.stdout, proc.stderr)
    assert "test login" in proc.stderr and "invalid characters" in proc.stderr
    assert "Traceback" not in proc.stderr and "added" not in proc.stdout
    assert "pi" not in run_cli("devices", "list", env=ek_env).stdout


@pytest.mark.parametrize(
    "entry, message",
    [
        ('[devices."bad name"]\nkind = "local"\n', "device name must be"),
        ('[devices."-x"]\nkind = "local"\n', "device name must be"),
        ('[devices.pi]\nkind = "ssh"\naddress = "-oProxyCommand=x@h"\n', "must not start with '-'"),
    ],
)
def test_hand_edited_inventory_gets_the_same_checks(ek_env, tmp_path, entry, message):
    """L9: names and addresses typed into devices.toml by hand are checked as `devices add` checks them."""
    inv = tmp_path / "ekhome" / "devices.toml"
    inv.write_text("schema_version = 1\n" + entry)
    proc = run_cli("devices", "list", env=ek_env, check=False)
    assert proc.returncode == 3, proc.stderr
    assert message in proc.stderr and str(inv) in proc.stderr and "Traceback" not in proc.stderr
