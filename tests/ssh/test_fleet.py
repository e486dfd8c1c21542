"""Fleets: tags, bounded parallelism, a summary, results recorded as they arrive, re-running only what
failed, proven on 24 real sshd servers on 127.0.0.1 with three faults (down, silent, cut mid-deploy)."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from edgekit.cli.fleet import is_fleet, rerun_hint
from tests.conftest import run_cli

from .proxy import CuttingProxy
from .sshd import SSHServer

FLEET = 24


class SilentServer:
    """Accepts TCP connections and never says a word (a hung device, a half-open firewall)."""

    def __init__(self) -> None:
        self._srv = socket.create_server(("127.0.0.1", 0))
        self.port = self._srv.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self._held.append(conn)

    def close(self) -> None:
        self._srv.close()
        for c in self._held:
            c.close()


def _json(proc) -> dict:
    return json.loads(proc.stdout)


def _add(ek_env, name, address, host_key, user_key, workdir, *extra):
    run_cli(
        "devices", "add", name, "--ssh", address, "--identity", str(user_key), "--host-key", host_key,
        "--python", sys.executable, "--workdir", str(workdir), "--no-connect", *extra, "--json", env=ek_env,
    )  # fmt: skip


def test_tags_address_a_group(ek_env, tmp_path):
    for name, tags in (("a", ("pi5", "rack1")), ("b", ("pi5",)), ("c", ("pi4",))):
        run_cli("devices", "add", name, "--local", *[x for t in tags for x in ("--tag", t)], env=ek_env)
    listed = {d["name"]: d for d in _json(run_cli("devices", "list", "--json", env=ek_env))["devices"]}
    assert listed["a"]["tags"] == ["pi5", "rack1"] and listed["c"]["tags"] == ["pi4"]
    from edgekit.devices import inventory

    cfg = f"{ek_env['EDGEKIT_HOME']}/devices.toml"
    assert [s.name for s in inventory.resolve("tag:pi5", path=cfg)] == ["a", "b"]
    assert [s.name for s in inventory.resolve("c,tag:pi5,a", path=cfg)] == ["c", "a", "b"]
    (tmp_path / "x.tflite").write_bytes(b"not looked at: the devices are resolved first")
    proc = run_cli("deploy", str(tmp_path / "x.tflite"), "--device", "tag:pi9", env=ek_env, check=False)
    assert proc.returncode == 2 and "no device has the tag 'pi9'" in proc.stderr and "pi4, pi5, rack1" in proc.stderr
    proc = run_cli("devices", "add", "d", "--local", "--tag", "bad tag", env=ek_env, check=False)
    assert proc.returncode == 2 and "a tag is 1-64 letters" in proc.stderr


def test_a_tag_is_a_fleet_and_the_rerun_line_names_only_the_failed():
    assert is_fleet("tag:pi5") and is_fleet("a,b") and is_fleet(None, True) and not is_fleet("pi")
    argv = ["profile", "b", "--all", "--runs", "3", "--json"]
    assert rerun_hint(["pi3", "pi7"], argv) == "edgekit profile b --runs 3 --json --device pi3,pi7"
    argv = ["eval", "b", "-d", "tag:rack", "--data", "d x"]
    assert rerun_hint(["pi1"], argv) == "edgekit eval b --data 'd x' --device pi1"


@pytest.mark.ssh
@pytest.mark.slow
def test_fleet_of_24_with_three_faults(user_key, ek_env, tiny_bundle, digits_dir, tmp_path):
    servers: list[SSHServer] = []
    silent = SilentServer()
    proxy = None
    try:
        for i in range(FLEET - 1):  # the 24th device is the silent one
            root = tmp_path / f"srv{i}"
            root.mkdir()
            servers.append(SSHServer(root, user_key.with_suffix(".pub")).start())
        proxy = CuttingProxy(servers[2].port)
        for i, s in enumerate(servers):
            address = f"{s.user}@127.0.0.1:{proxy.port}" if i == 2 else s.address
            _add(ek_env, f"pi{i:02d}", address, s.host_key(), user_key, tmp_path / f"wd{i}", "--tag", "rack")
        _add(ek_env, "pi23", f"root@127.0.0.1:{silent.port}", servers[0].host_key(), user_key,
             tmp_path / "wd23", "--tag", "rack", "--connect-timeout", "20")  # fmt: skip
        servers[1].stop()  # down: connection refused
        proxy.cut_after = 60_000  # the SSH login passes, the bundle's transfer does not

        proc = run_cli("deploy", str(tiny_bundle), "--device", "tag:rack", "--json", env=ek_env, check=False)
        assert proc.returncode == 9, proc.stderr
        doc = _json(proc)
        by = {d["device"]: d for d in doc["devices"]}
        assert sorted(n for n, d in by.items() if not d["ok"]) == ["pi01", "pi02", "pi23"]
        assert "connection refused" in by["pi01"]["error"]
        assert "cut short" in by["pi02"]["error"] or "dropped" in by["pi02"]["error"], by["pi02"]["error"]
        assert "no answer within 20 s" in by["pi23"]["error"], by["pi23"]["error"]
        assert doc["summary"]["ok"] == FLEET - 3 and doc["summary"]["rerun"].endswith("--device pi01,pi02,pi23")

        # profile the rack while the silent device keeps the command alive (it holds one slot of 8 for
        # its 20 s): the others' results are in the database before the command ends
        db = ek_env["EDGEKIT_DB"]
        cmd = [sys.executable, "-m", "edgekit", "profile", str(tiny_bundle), "--device", "tag:rack",
               "--runs", "3", "--warmup", "1", "--min-seconds", "0", "--json"]  # fmt: skip
        logs = tmp_path / "profile.out", tmp_path / "profile.err"  # files: a full pipe would block it
        with open(logs[0], "w") as fo, open(logs[1], "w") as fe:
            p = subprocess.Popen(cmd, env={**__import__("os").environ, **ek_env}, stdout=fo, stderr=fe, text=True)
        seen_while_running = 0
        while p.poll() is None:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                    seen_while_running = conn.execute("SELECT COUNT(*) FROM runs WHERE kind='profile'").fetchone()[0]
            except sqlite3.Error:
                pass
            if seen_while_running:
                break
            time.sleep(0.5)
        p.wait(timeout=300)
        out, err = logs[0].read_text(), logs[1].read_text()
        assert seen_while_running > 0, "no device's result was recorded before the whole fleet finished"
        assert p.returncode == 9, err
        prof = json.loads(out)
        ok = sorted(d["device"] for d in prof["devices"] if d["ok"])
        assert len(ok) == FLEET - 3 and "pi00" in ok
        with sqlite3.connect(db) as conn:
            stored = {r[0] for r in conn.execute("SELECT device FROM runs WHERE kind='profile'")}
        assert stored == set(ok)
        assert "fleet: 21 of 24 devices ok" in err and "re-run the failed ones:" in err

        eval_ = run_cli("eval", str(tiny_bundle), "--device", "tag:rack", "--data", str(digits_dir),
                        "--parallel", "12", "--json", env=ek_env, check=False)  # fmt: skip
        assert eval_.returncode == 9
        evals = {d["device"]: d for d in _json(eval_)["devices"] if d["ok"]}
        assert len(evals) == FLEET - 3 and len({e["result"]["tflite"]["top1"] for e in evals.values()}) == 1

        # mend the faults; the re-run line redoes only the failed devices, the others are not touched
        servers[1].start()
        proxy.cut_after = None
        silent.close()
        _add(ek_env, "pi23", servers[0].address, servers[0].host_key(), user_key, tmp_path / "wd23",
             "--tag", "rack", "--replace")  # fmt: skip
        rerun = doc["summary"]["rerun"].split()[1:]
        again = run_cli(*rerun, env=ek_env, check=False)
        assert again.returncode == 0, again.stderr
        assert sorted(d["device"] for d in _json(again)["devices"]) == ["pi01", "pi02", "pi23"]
        full = run_cli("deploy", str(tiny_bundle), "--device", "tag:rack", "--json", env=ek_env)
        assert all(d["ok"] and d["result"]["skipped"] for d in _json(full)["devices"])  # content-addressed
    finally:
        silent.close()
        if proxy is not None:
            proxy.close()
        for s in servers:
            s.stop()
