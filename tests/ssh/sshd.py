"""A real OpenSSH server on 127.0.0.1 for the tests: its own config, throw-away host and user keys."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")
SFTP_CANDIDATES = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
)


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "edgekit-test", "-f", str(path)], check=True
    )
    return path


@dataclass
class SSHServer:
    root: Path
    authorized_key: Path  # public key allowed to log in
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def user(self) -> str:
        return getpass.getuser()

    @property
    def address(self) -> str:
        return f"{self.user}@127.0.0.1:{self.port}"

    def host_key_path(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    def new_host_key(self) -> None:
        for p in (self.host_key_path(), self.host_key_path().with_suffix(".pub")):
            p.unlink(missing_ok=True)
        keygen(self.host_key_path())

    def host_key(self) -> str:
        return " ".join(self.host_key_path().with_suffix(".pub").read_text().split()[:2])

    def _config(self) -> Path:
        sftp = next((p for p in SFTP_CANDIDATES if os.path.exists(p)), "internal-sftp")
        shutil.copy(self.authorized_key, self.root / "authorized_keys")
        cfg = self.root / "sshd_config"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key_path()}\n"
            f"PidFile {self.root / 'sshd.pid'}\nAuthorizedKeysFile {self.root / 'authorized_keys'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nMaxSessions 50\nMaxStartups 50\n"
            f"Subsystem sftp {sftp}\nLogLevel ERROR\nPrintMotd no\n"
        )
        return cfg

    def start(self) -> SSHServer:
        if not self.host_key_path().exists():
            self.new_host_key()
        Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
        log = open(self.root / "sshd.log", "ab")
        self.proc = subprocess.Popen(
            [find_sshd(), "-D", "-e", "-f", str(self._config())],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("sshd did not start listening within 10 s")

    def stop(self) -> None:
        """Stop listening and end every session (sshd's per-connection children included)."""
        if self.proc is None:
            return
        children = _descendants(self.proc.pid)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc = None
        for pid in children:  # the per-connection sshd processes it forked: ours, ended by pid
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux; no psutil, so a core-only install runs the SSH tests)."""
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:  # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
                parent[int(d.name)] = int((d / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        pid = todo.pop()
        kids = [c for c, p in parent.items() if p == pid]
        out += kids
        todo += kids
    return out
