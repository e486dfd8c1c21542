"""The SSH target against a real OpenSSH server: quoting, copies, host keys, failures, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from edgekit.devices.targets.base import DeviceSpec
from edgekit.devices.targets.ssh import SSHTarget, fingerprint, keyscan, known_hosts_keys
from edgekit.errors import DeviceError, HostKeyError
from tests.conftest import run_cli

pytestmark = pytest.mark.ssh


def _target(server, key, **kw) -> SSHTarget:
    spec = DeviceSpec(
        "dev", "ssh", server.address, str(key), options={"host_keys": [server.host_key()]}, **kw
    )
    return SSHTarget(spec, connect_timeout=5)


def test_run_quotes_arguments_and_streams_stderr(sshd, user_key):
    t = _target(sshd, user_key)
    try:
        weird = ["a b", "it's", '"q"', "$HOME", "`id`", "semi;colon", "*"]
        res = t.run([sys.executable, "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", *weird])
        assert res.returncode == 0 and json.loads(res.stdout) == weird
        lines = []
        res = t.run(["sh", "-c", "echo one >&2; echo two >&2; exit 3"], stream=lines.append)
        assert (res.returncode, lines) == (3, ["one", "two"])
        assert t.home().startswith("/") and t.expand("~/x") == t.home().rstrip("/") + "/x"
    finally:
        t.close()


def test_push_pull_exists_with_spaces(sshd, user_key, tmp_path):
    t = _target(sshd, user_key)
    try:
        src = tmp_path / "a file's name.txt"
        src.write_text("payload")
        folder = tmp_path / "my folder"
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "x y.bin").write_bytes(b"\x00\x01")
        dest = tmp_path / "remote side"
        dest.mkdir()
        t.push(str(src), str(dest / "copy 1.txt"))
        t.push(str(folder), str(dest / "tree"))
        assert t.exists(str(dest / "copy 1.txt")) and not t.exists(str(dest / "nope"))
        assert (dest / "tree" / "sub" / "x y.bin").read_bytes() == b"\x00\x01"
        t.pull(str(dest / "copy 1.txt"), str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "payload"
    finally:
        t.close()


def test_command_timeout_stops_the_remote_command(sshd, user_key, tmp_path):
    t = _target(sshd, user_key)
    marker = tmp_path / "pid"
    try:
        t.run(["true"])  # connection up first, so the timeout below measures the command alone
        with pytest.raises(DeviceError, match="did not finish within 4 s"):
            t.run(["sh", "-c", f"echo $$ > '{marker}'; exec sleep 60"], timeout=4)
        pid = int(marker.read_text())
        assert _gone(pid), "remote command survived the timeout"
    finally:
        t.close()


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_ctrl_c_stops_the_remote_process(sshd, user_key, tmp_path):
    """SIGINT to the desktop process ends the command on the device too (no tty involved)."""
    marker = tmp_path / "pid"
    code = textwrap.dedent(f"""
        from edgekit.devices.targets.base import DeviceSpec
        from edgekit.devices.targets.ssh import SSHTarget
        spec = DeviceSpec("dev", "ssh", {sshd.address!r}, {str(user_key)!r}, options={{"host_keys": [{sshd.host_key()!r}]}})
        t = SSHTarget(spec)
        try:
            t.run(["sh", "-c", "echo $$ > '{marker}'; exec sleep 60"])
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(marker.read_text())
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert "interrupted" in out
    assert _gone(pid), "the remote sleep kept running after Ctrl-C"


def test_keyscan_fingerprint_and_known_hosts(sshd, tmp_path):
    keys = keyscan("127.0.0.1", sshd.port)
    assert sshd.host_key() in keys
    fp = fingerprint(sshd.host_key())
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.host_key_path())], capture_output=True, text=True
    )
    assert fp.split()[0] == expected.stdout.split()[1]
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key()}\n")
    assert known_hosts_keys("127.0.0.1", sshd.port, kh) == [sshd.host_key()]
    assert known_hosts_keys("127.0.0.1", sshd.port + 1, kh) == []


def test_no_recorded_host_key_is_refused(sshd, user_key):
    t = SSHTarget(DeviceSpec("dev", "ssh", sshd.address, str(user_key)))
    with pytest.raises(HostKeyError, match="devices trust dev"):
        t.run(["true"])


# --------------------------------------------------------------------------- the CLI


def test_add_asks_before_accepting_a_key(sshd, user_key, ek_env, tmp_path):
    base = [
        "devices",
        "add",
        "pi",
        "--ssh",
        sshd.address,
        "--identity",
        str(user_key),
        "--workdir",
        str(tmp_path),
    ]
    proc = run_cli(*base, env=ek_env, check=False)  # stdin is not a terminal: nobody to ask
    assert proc.returncode == 7 and "not accepted" in proc.stderr and "--yes" in proc.stderr
    assert fingerprint(sshd.host_key()).split()[0] in proc.stderr  # the fingerprint was shown
    assert not (tmp_path / "ekhome" / "devices.toml").exists()
    out = json.loads(run_cli(*base, "--yes", "--json", env=ek_env).stdout)
    assert out["host_key_source"] == "accepted with --yes" and out["login"].startswith("Linux")
    # from known_hosts, without asking
    kh = tmp_path / "kh"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key()}\n")
    out = json.loads(run_cli(*base, "--replace", "--known-hosts", str(kh), "--json", env=ek_env).stdout)
    assert out["host_key_source"].startswith("taken from") and out["added"]["host_keys"] == [sshd.host_key()]


def test_changed_host_key_is_refused_until_trusted(own_sshd, add_device, ek_env):
    add_device("pi", own_sshd)
    run_cli("devices", "check", "pi", "--json", env=ek_env)
    own_sshd.stop()
    own_sshd.new_host_key()
    own_sshd.start()
    t0 = time.monotonic()
    proc = run_cli("devices", "check", "pi", env=ek_env, check=False)
    assert proc.returncode == 7, proc.stderr
    assert "does not match the recorded one and was refused" in proc.stderr
    assert "edgekit devices trust pi" in proc.stderr
    assert fingerprint(own_sshd.host_key()).split()[0] in proc.stderr  # shows what it offers now
    assert time.monotonic() - t0 < 30
    # the inventory still holds the old key: nothing was accepted silently
    shown = json.loads(run_cli("devices", "show", "pi", "--json", env=ek_env).stdout)
    assert shown["host_keys"] != [own_sshd.host_key()]
    out = json.loads(run_cli("devices", "trust", "pi", "--yes", "--json", env=ek_env).stdout)
    assert out["accepted"] == [fingerprint(own_sshd.host_key())]
    run_cli("devices", "check", "pi", "--json", env=ek_env)


def test_unreachable_port_fails_fast(own_sshd, add_device, ek_env):
    add_device("pi", own_sshd)
    own_sshd.stop()
    t0 = time.monotonic()
    proc = run_cli("devices", "check", "pi", env=ek_env, check=False)
    assert proc.returncode == 6
    assert "connection refused" in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 30


def test_wrong_user_key_is_a_clear_error(sshd, wrong_key, ek_env):
    args = [
        "devices",
        "add",
        "pi",
        "--ssh",
        sshd.address,
        "--identity",
        str(wrong_key),
        "--host-key",
        sshd.host_key(),
        "--python",
        sys.executable,
    ]
    proc = run_cli(*args, env=ek_env, check=False)
    assert proc.returncode == 6
    assert (
        "SSH login" in proc.stderr and "was refused for key" in proc.stderr and "ssh-copy-id" in proc.stderr
    )
    assert "pi" not in run_cli("devices", "list", env=ek_env).stdout  # not added on a failed login
