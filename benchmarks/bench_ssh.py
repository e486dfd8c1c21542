"""What the SSH path costs: connection set-up, one remote command, deploy and re-deploy, a remote profile.

Runs against a real OpenSSH server on 127.0.0.1 (the test suite's throw-away sshd), so the figures are
edgekit's and OpenSSH's own overhead without a network; a Raspberry Pi over Wi-Fi adds its round trips
and bandwidth. Writes the `ssh-devices` section of BENCHMARKS.md.

    .venv/bin/python -m benchmarks.bench_ssh [--bundle DIR]   (default: exports a tiny bundle first)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import machine_line, write_section


def _median_s(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgekit", *args], env=env, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="an exported bundle (default: export a tiny one)")
    args = ap.parse_args(argv)

    from edgekit.devices.deploy import deploy, plan
    from edgekit.devices.targets.base import DeviceSpec
    from edgekit.devices.targets.ssh import SSHTarget
    from tests.ssh.sshd import SSHServer, keygen

    work = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    env = {**os.environ, "EDGEKIT_HOME": str(work / "home"), "EDGEKIT_DB": "off"}
    bundle = Path(args.bundle) if args.bundle else work / "bundle"
    if not args.bundle:
        print("exporting a tiny bundle (MobileNet α 0.25, 32 px, 3 classes)", file=sys.stderr)
        _cli(env, "export", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "32", "--classes", "3",
             "--quantize", "int8,float32", "-o", str(bundle))  # fmt: skip
    key = keygen(work / "id_ed25519")
    (work / "sshd").mkdir()
    server = SSHServer(work / "sshd", key.with_suffix(".pub")).start()
    try:
        spec = DeviceSpec("bench", "ssh", server.address, str(key), sys.executable, str(work / "device"),
                          {"host_keys": [server.host_key()]})  # fmt: skip

        def fresh_connection():
            t = SSHTarget(spec)
            t.run(["true"])
            t.close()

        connect = _median_s(fresh_connection, 10)
        target = SSHTarget(spec)
        target.run(["true"])
        command = _median_s(lambda: target.run(["true"]), 30)
        _, files, _ = plan(bundle)
        payload = sum(len(b) for b in files.values())
        firsts = []
        for i in range(5):  # each into an empty work folder: a full transfer + verification
            t = SSHTarget(DeviceSpec(**{**spec.__dict__, "workdir": str(work / f"fresh{i}")}))
            t0 = time.perf_counter()
            deploy(t, bundle)
            firsts.append(time.perf_counter() - t0)
            t.close()
        first = statistics.median(firsts)
        deploy(target, bundle)
        again = _median_s(lambda: deploy(target, bundle), 10)
        target.close()
        _cli(env, "devices", "add", "bench", "--ssh", server.address, "--identity", str(key), "--host-key",
             server.host_key(), "--python", sys.executable, "--workdir", str(work / "device"), "--no-connect")  # fmt: skip
        prof = ["profile", str(bundle), "--runs", "20", "--warmup", "2", "--min-seconds", "0", "--json"]
        remote = _median_s(lambda: _cli(env, *prof, "--device", "bench"), 3)
        local = _median_s(lambda: _cli(env, *prof, "--device", "local"), 3)
    finally:
        server.stop()

    body = f"""## SSH devices: connection, commands, deploy (`python -m benchmarks.bench_ssh`)

{machine_line()}. OpenSSH {subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()} \
against a real sshd on 127.0.0.1 (no network in the way: these are edgekit's and OpenSSH's own costs).

| step | median |
|---|---:|
| new connection (TCP + host-key check + ed25519 login) and one command, then close | {connect * 1000:.0f} ms |
| one more command on the open connection (ControlMaster; includes the remote kill-on-disconnect wrapper) | {command * 1000:.0f} ms |
| first deploy of a {payload / 1e6:.2f} MB bundle + scripts (status, tar stream, `sha256sum -c`, rename, `current` switch) | {first * 1000:.0f} ms |
| re-deploy of the same bundle (nothing transferred) | {again * 1000:.0f} ms |
| `edgekit profile` (2 precisions, 20 runs each) end to end, `--device` SSH | {remote:.2f} s |
| the same with `--device local` | {local:.2f} s |

Every remote command starts the device user's login shell (`bash -c`, which reads `~/.bashrc` under
sshd): on this machine root's `~/.bashrc` runs `pyenv init`, a few hundred ms of the per-command
figure (a Raspberry Pi's default shell starts in milliseconds). Load average during the run:
{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other jobs shared the machine), so treat the
absolute figures as upper bounds. The SSH run's extra time is the connection, the deploy check and
the copies of inputs; the device script itself is identical. Over Wi-Fi to a Raspberry Pi add a few ms per round trip and
the bundle's size divided by the link's bandwidth on the first deploy only.
"""
    write_section("ssh-devices", body)
    print(body)


if __name__ == "__main__":
    main()
