"""The CLI: lazy loading, help for every command, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgekit.cli import COMMANDS
from tests.conftest import TINY_MODEL, run_cli

LEAK_CHECK = """
import sys
from edgekit.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("LOADED=" + ",".join(m for m in ("tensorflow", "keras", "cv2", "ai_edge_litert") if m in sys.modules))
"""


@pytest.mark.parametrize("argv", [["--help"], ["models", "--help"], ["export", "--help"], ["--version"]])
def test_help_does_not_import_tensorflow(argv):
    proc = subprocess.run(
        [sys.executable, "-c", LEAK_CHECK.format(argv=argv)], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "LOADED="


def test_root_help_lists_every_command():
    out = run_cli("--help").stdout
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help(name):
    proc = run_cli(name, "--help")
    assert "Usage: edgekit" in proc.stdout and name in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["export", "--alpha", "-1"], 2, "alpha must be in (0, 1.25]; received -1"),
        (["export", "--model", "nope"], 2, "unknown model 'nope'"),
        (["export", "--quantize", "int4"], 2, "use one or more of"),
        (["export", "--labels", "/no/such/labels.txt"], 3, "labels file /no/such/labels.txt does not exist"),
        (["models", "--model", "resnet18", "--alpha", "0.5"], 2, "--alpha applies to MobileNet only"),
        (["nosuchcommand"], 2, "No such command"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, code, fragment):
    proc = run_cli(*args, check=False)
    assert proc.returncode == code
    assert fragment in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.tf
def test_models_json_for_one_configuration():
    rows = json.loads(
        run_cli("models", "--model", "mobilenet", "--alpha", "0.5", "--resolution", "160", "--json").stdout
    )
    assert len(rows) == 1
    r = rows[0]
    assert {"name", "family", "alpha", "resolution", "classes", "shortcut", "params", "macs"} <= set(r)
    assert r["name"] == "mobilenet_v1_050_160" and r["classes"] == 1000
    assert r["macs"] == pytest.approx(149e6 * (160 / 224) ** 2, rel=0.02)


@pytest.mark.tf
@pytest.mark.slow
def test_models_json_lists_the_zoo():
    rows = json.loads(run_cli("models", "--json").stdout)
    names = {r["name"] for r in rows}
    assert {
        "mobilenet_v1_100_224",
        "mobilenet_v1_025_224",
        "mobilenet_v1_100_128",
        "resnet18",
        "resnet34",
    } <= names
    r18 = next(r for r in rows if r["name"] == "resnet18")
    assert r18["params"] == pytest.approx(11.69e6, rel=0.02) and r18["shortcut"] == "B"


@pytest.mark.tf
def test_export_json_and_next_command(tmp_path, digits_dir):
    out = tmp_path / "b"
    proc = run_cli(
        "export",
        *TINY_MODEL,
        "--calibration",
        str(digits_dir),
        "-o",
        str(out),
    )
    assert f"edgekit profile {out}" in proc.stdout
    assert "int8 speed on this CPU" in proc.stdout
    data = json.loads(
        run_cli(
            "export",
            *TINY_MODEL,
            "-o",
            str(out),
            "--json",
        ).stdout
    )
    assert data["bundle"] == str(out)
    assert data["calibration"]["synthetic"] is True


def test_tables_are_not_cut_in_logs():
    """Regression (issue 12): off a terminal rich cut tables to 80 columns (`mobilene…`, `scale=0…`)."""
    code = (
        "from rich.table import Table\n"
        "from edgekit.cli.output import console\n"
        "t = Table('name', 'note')\n"
        "t.add_row('mobilenet_v1_050_160_' + 'x' * 90, 'scale=0.0235294122248888 zero_point=-128')\n"
        "console().print(t)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert "mobilenet_v1_050_160_" + "x" * 90 in out
    assert "scale=0.0235294122248888 zero_point=-128" in out
