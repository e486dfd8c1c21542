"""`edgekit sweep` end to end on this machine: a 2 α × 2 resolution grid on real digits, then resumed."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import run_cli

FAST = ["--runs", "5", "--min-seconds", "0.05"]


def _kinds(db) -> dict[str, int]:
    with sqlite3.connect(db) as c:
        return dict(c.execute("SELECT kind, COUNT(*) FROM runs WHERE sweep_key IS NOT NULL GROUP BY kind"))


@pytest.mark.tf
@pytest.mark.slow
def test_sweep_end_to_end_then_resumed(tmp_path, digits_dir):
    db, out = tmp_path / "r.db", tmp_path / "sweep"
    args = [
        "sweep", "--data", str(digits_dir), "--epochs", "0", "--alpha", "0.25,0.5", "--resolution", "32,48",
        "--budget-ms", "1000", *FAST, "-o", str(out), "--db", str(db), "--json",
    ]  # fmt: skip
    first = json.loads(run_cli(*args).stdout)
    assert (first["done"], first["skipped"], first["failures"]) == (4, 0, [])
    assert _kinds(db) == {"export": 4, "profile": 4, "eval": 8}  # a desktop and a device eval each
    grid = {(g["alpha"], g["resolution"]): g for g in first["grid"]}
    assert set(grid) == {(0.25, 32), (0.25, 48), (0.5, 32), (0.5, 48)}
    for g in grid.values():
        assert g["device"] == "local" and g["latency_ms"] > 0 and 0 <= g["top1"] <= 1 and g["macs"] > 0
        # each cell against its desktop reference (timed by the sweep's desktop eval)
        vs = g["vs_reference"]
        assert vs["latency_ratio"] == pytest.approx(g["latency_ms"] / vs["reference_p50_ms"])
        assert vs["top1_change_points"] == pytest.approx((g["top1"] - vs["reference_top1"]) * 100, abs=1e-3)
        assert g["vs_reference_text"].startswith(f"{g['model']} on local is ")
    # MACs grow with width and with resolution (the paper's Table 6-7 shape)
    assert grid[(0.25, 32)]["macs"] < grid[(0.25, 48)]["macs"] < grid[(0.5, 48)]["macs"]
    (pareto,) = first["pareto"]
    assert pareto["ranked_by"] == "top1" and pareto["front"]
    assert pareto["best_within_budget"] in pareto["front"]
    best = max(
        (g for g in grid.values() if g["latency_ms"] <= 1000), key=lambda g: (g["top1"], -g["latency_ms"])
    )
    assert pareto["best_within_budget"] == best["model"]
    html = (out / "sweep.html").read_text()
    assert (
        'data-plot="scatter"' in html and "Latency grid on local" in html and "Most accurate within" in html
    )

    # run again: everything is already recorded, nothing is redone
    again = json.loads(run_cli(*args).stdout)
    assert (again["done"], again["skipped"]) == (0, 4)
    assert _kinds(db) == {"export": 4, "profile": 4, "eval": 8}  # a desktop and a device eval each

    # interrupted after profiling one configuration: only its eval is redone, its bundle is reused
    with sqlite3.connect(db) as c:
        c.execute("DELETE FROM runs WHERE id = (SELECT MAX(id) FROM runs WHERE kind = 'eval')")
    resumed = json.loads(run_cli(*args).stdout)
    assert (resumed["done"], resumed["skipped"]) == (1, 3)
    assert _kinds(db) == {"export": 4, "profile": 4, "eval": 8}  # a desktop and a device eval each


def test_latency_only_summary_ranks_by_macs(tmp_path):
    """Without accuracy (random weights) the Pareto table and the budget pick rank by MACs."""
    from edgekit.pipeline.sweep import SweepConfig, summarize
    from edgekit.results.store import Store

    cfg = SweepConfig(latency_only=True, alphas=(0.25, 0.5), resolutions=(128,), budget_ms=5.0)
    with Store.open(tmp_path / "r.db") as s:
        for alpha, p50, macs in ((0.25, 2.0, 14e6), (0.5, 6.0, 49e6)):
            name = f"mobilenet_v1_{round(alpha * 100):03d}_128"
            manifest = {"name": name, "model": {"family": "mobilenet_v1", "alpha": alpha, "resolution": 128,
                                                "macs": macs, "params": 1e6}}  # fmt: skip
            result = {"configurations": [{"threads": 1, "batch": 1, "latency_ms": {"p50": p50}}],
                      "sweep": {"key": name}}  # fmt: skip
            s.add("profile", result, manifest=manifest, device={"name": "pi"})
        summary = summarize(s, ["mobilenet_v1_025_128", "mobilenet_v1_050_128"], cfg)
    (pareto,) = summary["pareto"]
    assert pareto["ranked_by"] == "macs" and pareto["device"] == "pi"
    assert pareto["front"] == ["mobilenet_v1_025_128", "mobilenet_v1_050_128"]  # faster vs more MACs
    assert pareto["best_within_budget"] == "mobilenet_v1_025_128"  # the other one needs 6 ms
    assert [g.get("top1") for g in summary["grid"]] == [None, None]


def test_emulated_device_latency_ranks_nothing_in_a_sweep(tmp_path):
    """A device whose CPU was emulated (qemu) keeps its figures but gets no Pareto front or pick."""
    from edgekit.pipeline.sweep import SweepConfig, summarize
    from edgekit.results.store import Store

    cfg = SweepConfig(latency_only=True, alphas=(0.25,), resolutions=(128,), budget_ms=50.0)
    name = "mobilenet_v1_025_128"
    manifest = {"name": name, "model": {"family": "mobilenet_v1", "alpha": 0.25, "resolution": 128,
                                        "macs": 14e6, "params": 1e6}}  # fmt: skip
    with Store.open(tmp_path / "r.db") as s:
        for device, emulated in (("emu", True), ("pi", False)):
            result = {"configurations": [{"threads": 1, "batch": 1, "latency_ms": {"p50": 3.0}}],
                      "emulated": emulated, "sweep": {"key": name}}  # fmt: skip
            s.add("profile", result, manifest=manifest, device={"name": device})
        summary = summarize(s, [name], cfg)
    pareto = {p["device"]: p for p in summary["pareto"]}
    assert pareto["emu"]["front"] == [] and pareto["emu"]["best_within_budget"] is None
    assert pareto["pi"]["front"] == [name] and pareto["pi"]["best_within_budget"] == name
    assert {g["device"]: g["emulated"] for g in summary["grid"]} == {"emu": True, "pi": False}


@pytest.mark.parametrize(
    "args, code, message",
    [
        ([], 2, "give --data DIR (train and evaluate) or --latency-only"),
        (["--latency-only", "--data", "x"], 2, "--latency-only measures random weights"),
        (["--latency-only", "--rho", "0.5", "--resolution", "64"], 2, "either --rho or --resolution"),
        (["--latency-only", "--alpha", "a"], 2, "--alpha must be comma-separated numbers"),
        (["--latency-only", "--budget-ms", "-1"], 2, "--budget-ms must be positive"),
        (["--data", "/nonexistent/folder"], 3, "is not a folder"),  # input data, not usage
    ],
)
def test_sweep_bad_input(tmp_path, args, code, message):
    proc = run_cli("sweep", *args, "--db", str(tmp_path / "r.db"), "-o", str(tmp_path / "o"), check=False)
    assert proc.returncode == code and message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.fixture
def ssh_fleet(tmp_path):
    """A real sshd on 127.0.0.1 registered as device `pi` in an isolated EDGEKIT_HOME."""
    import sys

    from tests.ssh.sshd import SSHServer, find_sshd, keygen

    if find_sshd() is None:
        pytest.skip("OpenSSH server not installed (bash scripts/setup.sh installs it as root)")
    (tmp_path / "keys").mkdir()
    key = keygen(tmp_path / "keys" / "id_ed25519")
    (tmp_path / "sshd").mkdir()
    server = SSHServer(tmp_path / "sshd", key.with_suffix(".pub")).start()
    env = {"EDGEKIT_HOME": str(tmp_path / "home"), "EDGEKIT_CONFIG": "", "EDGEKIT_DB": str(tmp_path / "r.db")}
    run_cli(
        "devices", "add", "pi", "--ssh", server.address, "--identity", str(key), "--host-key", server.host_key(),
        "--python", sys.executable, "--workdir", str(tmp_path / "pi work"), "--json", env=env,
    )  # fmt: skip
    yield env
    server.stop()


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.ssh
def test_sweep_on_two_devices_local_and_ssh(tmp_path, ssh_fleet):
    args = ["sweep", "--latency-only", "--alpha", "0.25", "--resolution", "32", "--classes", "10", *FAST,
            "--device", "local,pi", "-o", str(tmp_path / "out"), "--json"]  # fmt: skip
    res = json.loads(run_cli(*args, env=ssh_fleet).stdout)
    assert res["failures"] == [] and res["done"] == 1
    cells = {g["device"]: g for g in res["grid"]}
    assert set(cells) == {"local", "pi"} and all(c["latency_ms"] > 0 for c in cells.values())
    assert {p["device"] for p in res["pareto"]} == {"local", "pi"}
    with sqlite3.connect(ssh_fleet["EDGEKIT_DB"]) as c:
        rows = c.execute(
            "SELECT device, device_kind FROM runs WHERE kind = 'profile' ORDER BY device"
        ).fetchall()
    assert rows == [("local", "local"), ("pi", "ssh")]
    again = json.loads(run_cli(*args, env=ssh_fleet).stdout)
    assert (again["done"], again["skipped"]) == (0, 1)
