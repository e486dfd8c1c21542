"""The device inventory: TOML file, where it lives, validation; no server needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomllib

from edgekit.devices import inventory
from edgekit.devices.targets.base import DeviceSpec
from edgekit.devices.targets.ssh import parse_ssh_address
from edgekit.errors import UsageError
from tests.conftest import run_cli

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnwNsqcTtWt3KVmwnrQ/X93RryBP13WdEWAoJFUkTKH"


def test_parse_ssh_address():
    a = parse_ssh_address("pi@raspberrypi.local:2222")
    assert (a.user, a.host, a.port) == ("pi", "raspberrypi.local", 2222)
    assert parse_ssh_address("10.0.0.5").port == 22
    assert parse_ssh_address("me@[fe80::1]:22").host == "fe80::1"
    for bad in ("pi@", "pi@host:99999", "a b@host", ""):
        with pytest.raises(UsageError):
            parse_ssh_address(bad)


def test_round_trip_and_resolve(tmp_path):
    path = tmp_path / "d.toml"
    spec = DeviceSpec("pi", "ssh", "pi@h:22", "/k", "python3", "~/edgekit", {"host_keys": [KEY]})
    inventory.put(spec, path)
    assert inventory.load(path)["pi"] == spec
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(UsageError, match="already exists"):
        inventory.put(spec, path)
    inventory.put(DeviceSpec("cam", "adb", "SERIAL", options={"benchmark_model": "/data/local/tmp/bm"}), path)
    assert [s.name for s in inventory.resolve("cam,pi", path=path)] == ["cam", "pi"]
    assert [s.name for s in inventory.resolve(None, all_devices=True, path=path)] == ["cam", "pi"]
    assert inventory.resolve(None, path=path)[0].kind == "local"
    with pytest.raises(UsageError, match="no device named 'nope'"):
        inventory.resolve("pi,nope", path=path)
    updated = inventory.update("pi", path, python="~/edgekit/venv/bin/python")
    assert inventory.load(path)["pi"].python == updated.python == "~/edgekit/venv/bin/python"
    inventory.remove("pi", path)
    assert list(inventory.load(path)) == ["cam"]


@pytest.mark.parametrize("name", ["", "local", "a,b", "has space", "-x", "x" * 65])
def test_bad_names(name):
    with pytest.raises(UsageError):
        inventory.check_name(name)


def test_cli_add_list_show_remove(tmp_path, ek_env):
    run_cli(
        "devices",
        "add",
        "pi",
        "--ssh",
        "pi@192.0.2.7:2222",
        "--host-key",
        KEY,
        "--no-connect",
        "--json",
        env=ek_env,
    )
    run_cli(
        "devices",
        "add",
        "phone",
        "--adb",
        "emulator-5554",
        "--benchmark-model",
        "/data/local/tmp/benchmark_model",
        env=ek_env,
    )
    run_cli("devices", "add", "here", "--local", env=ek_env)
    listed = json.loads(run_cli("devices", "list", "--json", env=ek_env).stdout)
    assert [d["name"] for d in listed["devices"]] == ["here", "phone", "pi"]
    shown = json.loads(run_cli("devices", "show", "pi", "--json", env=ek_env).stdout)
    assert shown["address"] == "pi@192.0.2.7:2222"
    assert shown["host_key_fingerprints"][0].startswith("SHA256:")
    # the file is TOML under EDGEKIT_HOME, with no secret in it
    text = (tmp_path / "ekhome" / "devices.toml").read_text()
    entries = tomllib.loads(text)["devices"]
    assert entries["phone"]["benchmark_model"] == "/data/local/tmp/benchmark_model"
    assert entries["pi"]["host_keys"] == [KEY]
    assert not any("pass" in key for entry in entries.values() for key in entry)
    run_cli("devices", "remove", "phone", env=ek_env)
    assert "phone" not in run_cli("devices", "list", env=ek_env).stdout


def test_cli_config_moves_the_file(tmp_path, ek_env):
    cfg = tmp_path / "elsewhere" / "inv.toml"
    run_cli("devices", "--config", str(cfg), "add", "x", "--local", env=ek_env)
    assert cfg.is_file()
    assert "x" in run_cli("devices", "list", "--config", str(cfg), env=ek_env).stdout
    assert not (tmp_path / "ekhome" / "devices.toml").exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["add", "pi", "--ssh", "pi@h", "--adb", "S"], 2, "exactly one of"),
        (["add", "pi", "--ssh", "pi@h", "--no-connect"], 2, "--no-connect needs --host-key"),
        (  # a host key that cannot be a key: the host-key exit code, as for any key problem
            ["add", "pi", "--ssh", "pi@h", "--host-key", "ssh-ed25519 notakey", "--no-connect"],
            7,
            "not a valid SSH",
        ),
        (["add", "bad name", "--local"], 2, "device name must be"),
        (["show", "ghost"], 2, "no device named 'ghost'"),
    ],
)
def test_cli_bad_input_is_one_line(ek_env, args, code, message):
    proc = run_cli("devices", *args, env=ek_env, check=False)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (Path(ek_env["EDGEKIT_HOME"]) / "devices.toml").exists()  # nothing half-registered


def test_broken_inventory_file(tmp_path, ek_env):
    (tmp_path / "ekhome" / "devices.toml").write_text("devices = [ not toml")
    proc = run_cli("devices", "list", env=ek_env, check=False)
    assert proc.returncode == 3 and "not valid TOML" in proc.stderr


def test_device_commands_never_import_tensorflow(tmp_path, ek_env):
    """`devices`, `deploy` and the SSH/adb targets must run on a machine without TensorFlow."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from edgekit.cli import cli\n"
        "import edgekit.devices.deploy, edgekit.devices.check, edgekit.devices.fleet, edgekit.devices.targets.ssh, edgekit.devices.targets.adb\n"
        "r = CliRunner()\n"
        "for args in (['devices', 'add', 'x', '--local'], ['devices', 'list', '--json'], ['devices', 'show', 'x'],\n"
        "             ['deploy', '--help'], ['devices', 'check', '--help']):\n"
        "    res = r.invoke(cli, args)\n"
        "    assert res.exit_code == 0, (args, res.output)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "assert not bad, bad\n"
        "print('clean')\n"
    )
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **ek_env}
    )
    assert proc.returncode == 0 and "clean" in proc.stdout, proc.stderr
