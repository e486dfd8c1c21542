"""Fleets: total wall time of a deploy and a profile on 1, 8 and 24 devices, with and without SSH
connection reuse (ControlMaster vs a fresh connection per command). Writes the `fleet` section of
BENCHMARKS.md.

Each "device" is a real sshd on 127.0.0.1 (the test suite's throw-away servers), so the figures are
edgekit's and OpenSSH's own costs; the device scripts of all devices share this machine's cores, which
a real rack does not (there each device computes on its own CPU).

    .venv/bin/python -m benchmarks.bench_fleet [--bundle DIR] [--sizes 1,8,24]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import command_line, machine_line, write_section


def _cli(env: dict, *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgekit", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", default=None, help="an exported bundle (default: export a tiny one)")
    ap.add_argument("--sizes", default="1,8,24", help="fleet sizes")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from tests.ssh.sshd import SSHServer, keygen

    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    env = {**os.environ, "EDGEKIT_HOME": str(work / "home"), "EDGEKIT_CONFIG": "", "EDGEKIT_DB": str(work / "r.db")}
    bundle = Path(args.bundle) if args.bundle else work / "bundle"
    if not args.bundle:
        print("exporting a tiny bundle (MobileNet α 0.25, 32 px, 3 classes)", file=sys.stderr)
        _cli(env, "export", "--model", "mobilenet", "--alpha", "0.25", "--resolution", "32", "--classes", "3",
             "--quantize", "int8", "-o", str(bundle))  # fmt: skip
    key = keygen(work / "id_ed25519")
    servers = []
    rows = []
    try:
        for i in range(max(sizes)):
            (work / f"srv{i}").mkdir()
            servers.append(SSHServer(work / f"srv{i}", key.with_suffix(".pub")).start())
        for reuse in (True, False):
            for n in sizes:
                tag = f"n{n}{'r' if reuse else 'f'}"
                for i in range(n):  # fresh work folders: the deploy transfers everything
                    _cli(env, "devices", "add", f"{tag}-{i}", "--ssh", servers[i].address, "--identity", str(key),
                         "--host-key", servers[i].host_key(), "--python", sys.executable,
                         "--workdir", str(work / "dev" / tag / str(i)), "--no-connect", "--tag", tag)  # fmt: skip
                e = {**env, "EDGEKIT_SSH_MULTIPLEX": "1" if reuse else "0"}
                sel = ["--device", f"tag:{tag}", "--parallel", "8"]
                print(f"{tag}: deploy + profile on {n} device(s)", file=sys.stderr)
                dep = _cli(e, "deploy", str(bundle), *sel)
                prof = _cli(e, "profile", str(bundle), *sel, "--runs", "5", "--warmup", "1", "--min-seconds", "0")
                rows.append((n, reuse, dep, prof))
    finally:
        for s in servers:
            s.stop()

    def cost(n, reuse, k):
        return next(r[k] for r in rows if r[0] == n and r[1] == reuse)

    lines = []
    for n in sizes:
        d1, d0 = cost(n, True, 2), cost(n, False, 2)
        p1, p0 = cost(n, True, 3), cost(n, False, 3)
        lines.append(
            f"| {n} | {d1:.1f} s ({d1 / n:.2f} s/device) | {d0:.1f} s | {d0 / d1:.2f}× | "
            f"{p1:.1f} s ({p1 / n:.2f} s/device) | {p0:.1f} s | {p0 / p1:.2f}× |"
        )
    body = f"""## Fleets: 1, 8 and 24 devices, connection reuse on and off (`python -m benchmarks.bench_fleet`)

{machine_line()}. Command: `{command_line()}`. Each device is a real sshd on 127.0.0.1; `--parallel 8`;
"reuse" is one ControlMaster connection per device for all of its commands, "fresh" sets
`EDGEKIT_SSH_MULTIPLEX=0` (a TCP + SSH handshake for every command). A tiny int8 MobileNet, deployed
into empty work folders, then `profile --runs 5`. One run per cell, taken in one go; load average at
the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.

| devices | deploy, reuse | deploy, fresh | fresh ÷ reuse | profile, reuse | profile, fresh | fresh ÷ reuse |
|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(lines)}

All devices here share this machine's {os.cpu_count()} cores, so per-device time grows with the fleet
once more device scripts run than there are cores (the profile column); on a real rack each device
computes on its own CPU and only the desktop's SSH processes are shared. Every remote command also
starts the device user's login shell (on this machine root's `~/.bashrc` runs `pyenv init`), which is
what connection reuse cannot save.
"""
    write_section("fleet", body)
    print(body)


if __name__ == "__main__":
    main()
