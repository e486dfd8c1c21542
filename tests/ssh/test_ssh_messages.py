"""Issue 15, L6: SSH failures read as what happened, once."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.ssh


class BannerOnlyServer:
    """A TCP server that sends an SSH banner and closes: a broken or overloaded sshd (MaxStartups)."""

    def __init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            try:
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
                time.sleep(0.2)
            finally:
                conn.close()

    def close(self) -> None:
        self._srv.close()


def test_a_server_that_sends_only_its_banner(sshd, user_key, ek_env):
    server = BannerOnlyServer()
    try:
        proc = run_cli(
            "devices", "add", "pi", "--ssh", f"{sshd.user}@127.0.0.1:{server.port}",
            "--identity", str(user_key), "--host-key", sshd.host_key(), env=ek_env, check=False,
        )  # fmt: skip
    finally:
        server.close()
    assert proc.returncode == 6, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "sent its SSH banner" in lines[0] and "SSH-2.0-OpenSSH_9.2p1" in lines[0]
    assert "the connection dropped" not in lines[0]


@pytest.mark.parametrize("what", ["check", pytest.param("deploy", marks=pytest.mark.tf)])
def test_a_host_key_error_is_printed_once(own_sshd, add_device, ek_env, what, request):
    add_device("pi", own_sshd)
    own_sshd.stop()
    own_sshd.new_host_key()
    own_sshd.start()
    if what == "check":
        command = ["devices", "check", "pi"]
    else:
        command = ["deploy", str(request.getfixturevalue("tiny_bundle")), "--device", "pi"]
    proc = run_cli(*command, env=ek_env, check=False)
    assert proc.returncode == 7, proc.stderr
    both = proc.stdout + proc.stderr
    assert both.count("does not match the recorded one") == 1, both
