"""SSH target (Raspberry Pi & co.) built on the system OpenSSH client (`ssh`, `scp`).

Why the system client rather than paramiko: it honours ssh-agent, ~/.ssh/config (ProxyJump, ...)
and hardware keys exactly as the user's own `ssh` does, and needs no extra Python package.

Host keys: each device's accepted keys live in the inventory (`host_keys`). Every connection runs
with `StrictHostKeyChecking=yes` against a known_hosts file written from exactly those keys under a
per-device alias, so an unknown or changed key is refused, never accepted silently. One master
connection (ControlMaster) per SSHTarget carries all its commands and copies; it is closed with the
target, so a new SSHTarget is a new, freshly verified connection.

Remote commands: argv is quoted for the remote shell and run under a tiny POSIX-sh wrapper that kills
the command's process group when our end of the connection goes away (Ctrl-C, timeout, dropped link),
because sshd without a tty does not signal remote processes when the client dies.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.devices.targets.base import CommandResult, DeviceSpec, Target
from edgekit.devices.targets.lifetime import die_with_parent
from edgekit.errors import DependencyError, DeviceError, HostKeyError, UsageError

CONNECT_TIMEOUT_S = 10.0
CONTROL_PERSIST_S = 5
_CTL_PREFIX = "ek-ssh-"
_OWNER = "owner.pid"

# Runs "$@" in the background, watches stdin (our ssh channel) on fd 3: EOF there means the client is
# gone, so the whole remote process group (the ssh session's) is terminated.
_WRAPPER = (
    'exec 3<&0; "$@" </dev/null 3<&- & p=$!; '
    "( while read -r _; do :; done; kill -TERM 0 ) <&3 >/dev/null 2>&1 & w=$!; exec 3<&-; "
    'wait "$p"; rc=$?; kill "$w" 2>/dev/null; exit "$rc"'
)

_HOSTKEY_CHANGED = "REMOTE HOST IDENTIFICATION HAS CHANGED"
_SSH_ERRORS = (
    (re.compile(r"Host key verification failed|No .* host key is known|" + _HOSTKEY_CHANGED), "hostkey"),
    (re.compile(r"Permission denied|Too many authentication failures"), "auth"),
    (re.compile(r"Connection refused"), "refused"),
    (re.compile(r"timed out|Operation timed out"), "timeout"),
    (re.compile(r"Could not resolve hostname|Name or service not known"), "resolve"),
    (re.compile(r"No route to host|Network is unreachable"), "route"),
    (
        re.compile(
            r"Connection closed|Connection reset|closed by remote host|Broken pipe|lost connection|"
            r"client_loop|mux_client|Control socket connect"
        ),
        "dropped",
    ),
)


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        raise DependencyError(
            f"the OpenSSH client `{binary}` is not installed", hint="apt install openssh-client"
        )
    return path


def _remove_stale_control_dirs(base: str) -> None:
    """Control folders (/tmp/ek-ssh-*) of edgekit processes that died without cleaning up (kill -9)."""
    for d in Path(base).glob(f"{_CTL_PREFIX}*"):
        try:
            if d.stat().st_uid != os.getuid():
                continue
            pid = int((d / _OWNER).read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            continue  # not ours, or one being created right now
        try:
            os.kill(pid, 0)
            continue  # its edgekit still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        if (d / "m").exists():  # a master still up: ask it to exit
            with contextlib.suppress(Exception):
                subprocess.run([_require("ssh"), "-o", f"ControlPath={d}/m", "-O", "exit", "x"],
                               capture_output=True, timeout=10)  # fmt: skip
        shutil.rmtree(d, ignore_errors=True)


def host_alias(name: str) -> str:
    """known_hosts name for a device: keys are tied to the device entry, not to a (reusable) IP."""
    return f"edgekit-{name}"


# --------------------------------------------------------------------------- host keys


def keyscan(host: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> list[str]:
    """The host's public keys as "type base64" strings (unauthenticated: the user must confirm)."""
    proc = subprocess.run(
        [_require("ssh-keyscan"), "-T", str(max(1, int(timeout))), "-p", str(port), host],
        capture_output=True,
        text=True,
        timeout=timeout * 3 + 5,
    )
    keys = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys.append(f"{parts[1]} {parts[2]}")
    if not keys:
        raise DeviceError(
            f"could not read the SSH host key of {host}:{port} ({proc.stderr.strip() or 'no answer'})",
            hint="check the address and that sshd runs on the device",
        )
    return sorted(set(keys))


def known_hosts_keys(host: str, port: int, known_hosts: str | os.PathLike | None = None) -> list[str]:
    """Keys already trusted for host[:port] in the user's known_hosts (hashed entries included)."""
    path = Path(known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()
    if not path.is_file():
        return []
    lookup = host if port == 22 else f"[{host}]:{port}"
    proc = subprocess.run(
        [_require("ssh-keygen"), "-F", lookup, "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    keys = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if line.startswith("#") or len(parts) < 3 or parts[0].startswith("@"):
            continue  # comments, and @revoked / @cert-authority markers are not plain trust
        keys.append(f"{parts[1]} {parts[2]}")
    return sorted(set(keys))


def fingerprint(key: str) -> str:
    """SHA256 fingerprint of a "type base64" key, as `ssh` prints it."""
    with tempfile.NamedTemporaryFile("w", suffix=".pub", delete=False) as f:
        f.write(key + "\n")
    try:
        proc = subprocess.run(
            [_require("ssh-keygen"), "-l", "-E", "sha256", "-f", f.name], capture_output=True, text=True
        )
    finally:
        os.unlink(f.name)
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) < 2:
        raise HostKeyError(f"not a valid SSH public key: {key[:40]!r}")
    return f"{parts[1]} ({key.split()[0]})"


# --------------------------------------------------------------------------- the target


def multiplexing() -> bool:
    """One SSH connection per device carries all its commands (ControlMaster), unless
    EDGEKIT_SSH_MULTIPLEX=0 asks for a fresh connection per command (slower; for comparison)."""
    return os.environ.get("EDGEKIT_SSH_MULTIPLEX", "1").strip().lower() not in ("0", "no", "false", "off")


class SSHTarget(Target):
    """A device reached with `ssh`/`scp`; see the module docstring for the safety rules."""

    def __init__(self, spec: DeviceSpec, connect_timeout: float | None = None) -> None:
        super().__init__(spec)

        self.addr = parse_ssh_address(spec.address)
        # the device entry may allow a slow link more time (`devices add --connect-timeout S`)
        self.connect_timeout = float(connect_timeout or spec.options.get("connect_timeout") or CONNECT_TIMEOUT_S)
        self._home: str | None = None
        self._dir: str | None = None
        self._lock = threading.Lock()
        self._connected = False  # a command has run: later drops are drops, not a failed handshake

    # ----------------------------------------------------------------- connection options

    def _ctl_dir(self) -> str:
        with self._lock:
            if self._dir is None:
                base = "/tmp" if os.path.isdir("/tmp") else None
                _remove_stale_control_dirs(base or tempfile.gettempdir())
                # Short path under /tmp: a Unix socket path must stay under ~100 bytes.
                self._dir = tempfile.mkdtemp(prefix=_CTL_PREFIX, dir=base)
                Path(self._dir, _OWNER).write_text(str(os.getpid()), encoding="utf-8")
                keys = self.spec.options.get("host_keys") or []
                lines = [f"{host_alias(self.name)} {k}\n" for k in keys]
                Path(self._dir, "known_hosts").write_text("".join(lines), encoding="utf-8")
                atexit.register(self.close)
            return self._dir

    def _opts(self) -> list[str]:
        if not self.spec.options.get("host_keys"):
            raise HostKeyError(
                f"device {self.name!r} has no accepted SSH host key",
                hint=f"run `edgekit devices trust {self.name}` to check and record it",
            )
        d = self._ctl_dir()
        opts = {
            "BatchMode": "yes",  # never prompt (passwords are not supported: keys and ssh-agent only)
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": f"{d}/known_hosts",
            "GlobalKnownHostsFile": "/dev/null",
            "HostKeyAlias": host_alias(self.name),
            "CheckHostIP": "no",
            "UpdateHostKeys": "no",
            "ConnectTimeout": str(max(1, int(self.connect_timeout))),
            "ServerAliveInterval": "5",
            "ServerAliveCountMax": "3",
            "ControlMaster": "auto",
            "ControlPath": f"{d}/m",
            # Short: a master outlives its last command by this much, so one left by a killed edgekit
            # (no atexit ran) ends within seconds; a run's commands follow each other far faster.
            "ControlPersist": str(CONTROL_PERSIST_S),
            "LogLevel": "ERROR",
        }
        if not multiplexing():  # one TCP + SSH handshake per command (EDGEKIT_SSH_MULTIPLEX=0)
            opts.update(ControlMaster="no", ControlPath="none")
            opts.pop("ControlPersist")
        out = []
        for k, v in opts.items():
            out += ["-o", f"{k}={v}"]
        if self.spec.identity:
            out += ["-i", str(Path(self.spec.identity).expanduser()), "-o", "IdentitiesOnly=yes"]
        if self.addr.user:
            out += ["-o", f"User={self.addr.user}"]
        return out

    def ssh_argv(self, remote_command: str) -> list[str]:
        """The full local argv that runs one remote shell command line."""
        return [
            _require("ssh"),
            *self._opts(),
            "-p",
            str(self.addr.port),
            "--",
            self.addr.host,
            remote_command,
        ]

    def _scp_argv(self) -> list[str]:
        return [_require("scp"), "-q", *self._opts(), "-P", str(self.addr.port)]

    def _remote_spec(self, path: str) -> str:
        host = f"[{self.addr.host}]" if ":" in self.addr.host else self.addr.host
        return f"{host}:{self.expand(path)}"

    # ----------------------------------------------------------------- errors

    def _raise_for_ssh(self, stderr: str, what: str) -> None:
        """Turn an ssh exit 255 into a one-line, actionable error (or return if not ssh's own)."""
        kind = next((k for rx, k in _SSH_ERRORS if rx.search(stderr)), None)
        where = f"device {self.name!r} ({self.addr})"
        if kind == "hostkey":
            seen = ""
            with contextlib.suppress(Exception):
                seen = (
                    " now offers "
                    + ", ".join(fingerprint(k) for k in keyscan(self.addr.host, self.addr.port, timeout=3))
                    + ";"
                )
            raise HostKeyError(
                f"SSH host key of {where} does not match the recorded one and was refused;{seen} "
                "if the device was reinstalled or its keys regenerated, check the fingerprint on the device "
                f"(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and accept it deliberately with "
                f"`edgekit devices trust {self.name}`"
            )
        if kind == "auth":
            key = self.spec.identity or "your ssh-agent / default keys"
            raise DeviceError(
                f"SSH login to {where} was refused for key {key}",
                hint=f"install the public key on the device: ssh-copy-id -i {self.spec.identity or 'KEY'}.pub "
                f"-p {self.addr.port} {self.addr.user + '@' if self.addr.user else ''}{self.addr.host}",
            )
        messages = {
            "refused": "connection refused (is sshd running, is the port right?)",
            "timeout": f"no answer within {self.connect_timeout:g} s (device off, asleep or firewalled?)",
            "resolve": "host name does not resolve",
            "route": "no route to host (network down or wrong address?)",
            "dropped": "the connection dropped",
        }
        if kind == "dropped" and not self._connected:
            messages["dropped"] = self._handshake_problem() or messages["dropped"]
        if kind:
            raise DeviceError(f"{what} on {where} failed: {messages[kind]}")
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh exited 255"
        raise DeviceError(f"{what} on {where} failed: {last}")

    # ----------------------------------------------------------------- Target interface

    def home(self) -> str:
        if self._home is None:
            res = self._exec('printf %s "$HOME"', timeout=self.connect_timeout * 3 + 10)
            if res.returncode != 0 or not res.stdout.startswith("/"):
                raise DeviceError(f"cannot read $HOME on device {self.name!r}: {res.stderr.strip()}")
            self._home = res.stdout
        return self._home

    def expand(self, path: str) -> str:
        """A leading `~/` becomes the remote home (quoted arguments are never tilde-expanded)."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def run(
        self,
        argv: list[str],
        *,
        timeout: float | None = None,
        stream: Callable[[str], None] | None = None,
        input_file=None,
    ) -> CommandResult:
        """Run argv on the device; args starting with `~/` are expanded to the remote home.

        `input_file` (a binary file object) is fed to the command's stdin; without it the remote
        wrapper watches stdin so the command dies with the connection.
        """
        args = [self.expand(a) if a.startswith("~") else a for a in argv]
        if input_file is None:
            cmd = shlex.join(["sh", "-c", _WRAPPER, "edgekit", *args])
        else:
            cmd = shlex.join(args)
        return self._exec(cmd, timeout=timeout, stream=stream, input_file=input_file, what=f"`{args[0]}`")

    def _exec(self, cmd: str, *, timeout=None, stream=None, input_file=None, what="command") -> CommandResult:
        proc = subprocess.Popen(
            self.ssh_argv(cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent(),  # its channel closes with edgekit: the remote wrapper stops the job
        )  # fmt: skip
        out: list[bytes] = []
        err: list[str] = []

        def read_out():
            out.append(proc.stdout.read())

        def read_err():
            for raw in iter(proc.stderr.readline, b""):
                line = raw.decode("utf-8", "replace")
                err.append(line)
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream(line.rstrip("\n"))

        def feed():
            try:
                if input_file is not None:
                    shutil.copyfileobj(input_file, proc.stdin, 1 << 16)
                    proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass

        threads = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err, feed)]
        for t in threads:
            t.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._stop(proc)
            raise DeviceError(
                f"{what} on device {self.name!r} did not finish within {timeout:g} s and was stopped",
                hint="raise the timeout (--timeout) or check the device",
            ) from None
        except BaseException:  # Ctrl-C: close the channel so the remote wrapper kills the command
            self._stop(proc)
            raise
        for t in threads[:2]:
            t.join(timeout=10)
        stderr = "".join(err)
        if proc.returncode == 255 and any(rx.search(stderr) for rx, _ in _SSH_ERRORS):
            self._raise_for_ssh(stderr, what)
        if proc.returncode == 255 and not stderr.strip():
            self._raise_for_ssh("Connection closed", what)
        self._connected = True
        return CommandResult(proc.returncode, b"".join(out).decode("utf-8", "replace"), stderr)

    def _handshake_problem(self) -> str | None:
        """What the port says when ssh gave up before any command ran: a server that sends its banner
        and no more (overloaded: MaxStartups; a tarpit; a broken sshd) is not a dropped connection."""
        import socket

        try:
            with socket.create_connection((self.addr.host, self.addr.port), timeout=3) as conn:
                conn.settimeout(3)
                first = conn.recv(256)
        except OSError:
            return None
        line = first.split(b"\n", 1)[0].strip().decode("ascii", "replace")[:80]
        if line.startswith("SSH-"):
            return (
                f"the server sent its SSH banner ({line}) but closed the connection before the handshake "
                "finished: an overloaded or broken sshd (MaxStartups, a firewall tarpit?)"
            )
        if not line:
            return "the port accepts connections but sends no SSH banner (is it an SSH server?)"
        return f"the port answers, but not with SSH ({line!r}): is the port right?"

    @staticmethod
    def _stop(proc: subprocess.Popen) -> None:
        with contextlib.suppress(Exception):
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def push(self, local_path: str, remote_path: str) -> None:
        """Copy a file (scp) or a folder (tar stream, so its contents land at remote_path)."""
        local = Path(local_path)
        if local.is_dir():
            import io
            import tarfile

            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(local, arcname=".")
            buf.seek(0)
            dest = self.expand(remote_path)
            res = self.run(["sh", "-c", 'mkdir -p "$1" && tar -xf - -C "$1"', "sh", dest], input_file=buf)
            if res.returncode != 0:
                raise DeviceError(f"copying {local} to {self.name}:{dest} failed: {res.stderr.strip()}")
            return
        self._scp([str(local), self._remote_spec(remote_path)], f"copying {local}")

    def pull(self, remote_path: str, local_path: str) -> None:
        self._scp([self._remote_spec(remote_path), str(local_path)], f"fetching {remote_path}")

    def _scp(self, args: list[str], what: str) -> None:
        proc = subprocess.run(
            [*self._scp_argv(), "--", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=600,
        )
        if proc.returncode != 0:
            if any(rx.search(proc.stderr) for rx, _ in _SSH_ERRORS):
                self._raise_for_ssh(proc.stderr, what)
            raise DeviceError(f"{what} on device {self.name!r} failed: {proc.stderr.strip() or 'scp failed'}")

    def exists(self, remote_path: str) -> bool:
        return self.run(["test", "-e", remote_path], timeout=self.connect_timeout * 3 + 10).returncode == 0

    def describe(self) -> dict:
        return {**super().describe(), "address": str(self.addr)}

    # ----------------------------------------------------------------- port forwarding

    def forward(self, local_port: int, remote_port: int, remote_host: str = "127.0.0.1") -> Tunnel:
        """`ssh -N -L 127.0.0.1:local_port:remote_host:remote_port`, checked like every connection
        (pinned host key, BatchMode) but on a connection of its own, so it ends with close()."""
        argv = [
            _require("ssh"),
            # first value wins in ssh: these must come before _opts()'s ControlMaster/ControlPath
            "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ExitOnForwardFailure=yes",
            *self._opts(), "-N", "-L", f"127.0.0.1:{local_port}:{remote_host}:{remote_port}",
            "-p", str(self.addr.port), "--", self.addr.host,
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        tunnel = Tunnel(proc, local_port)
        deadline = time.monotonic() + self.connect_timeout * 2
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode("utf-8", "replace")
                if any(rx.search(stderr) for rx, _ in _SSH_ERRORS):
                    self._raise_for_ssh(stderr, f"forwarding port {local_port}")
                last = stderr.strip().splitlines()[-1] if stderr.strip() else f"ssh exited {proc.returncode}"
                raise DeviceError(f"forwarding 127.0.0.1:{local_port} to {self.name} failed: {last}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", local_port)) == 0:
                    return tunnel
            time.sleep(0.05)
        tunnel.close()
        raise DeviceError(f"forwarding 127.0.0.1:{local_port} to {self.name}: no tunnel after {self.connect_timeout * 2:g} s")

    def close(self) -> None:
        """Stop the master connection and remove the control folder."""
        d, self._dir = self._dir, None
        if not d:
            return
        if os.path.exists(f"{d}/m"):
            with contextlib.suppress(Exception):
                subprocess.run(
                    [_require("ssh"), "-o", f"ControlPath={d}/m", "-O", "exit", self.addr.host],
                    capture_output=True,
                    timeout=10,
                )
        shutil.rmtree(d, ignore_errors=True)


class Tunnel:
    """A running `ssh -L`; close() ends it."""

    def __init__(self, proc: subprocess.Popen, local_port: int) -> None:
        self.proc = proc
        self.local_port = local_port

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            self.proc.stderr.close()


_ADDR_RE = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[0-9A-Fa-f:]+\]|[^:@\s\[\]]+)(?::(?P<port>\d+))?$")



@dataclass(frozen=True)
class SSHAddress:
    user: str | None
    host: str
    port: int = 22

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.host}:{self.port}"



def parse_ssh_address(value: str) -> SSHAddress:
    """USER@HOST[:PORT] (IPv6 hosts in brackets) -> SSHAddress."""
    m = _ADDR_RE.match(value.strip())
    if not m:
        raise UsageError(f"--ssh expects USER@HOST[:PORT]; received {value!r}")
    port = int(m["port"]) if m["port"] else 22
    if not 0 < port < 65536:
        raise UsageError(f"SSH port must be in 1..65535; received {port}")
    for what, part in (("user", m["user"]), ("host", m["host"])):
        if part and part.startswith("-"):  # ssh would read it as an option (-oProxyCommand=...)
            raise UsageError(f"the SSH {what} name must not start with '-'; received {value!r}")
    return SSHAddress(m["user"], m["host"].strip("[]"), port)
