"""Issue 15: a database in a read-only folder is still readable (L9); Markdown escapes HTML (L8)."""

from __future__ import annotations

import copy
import json
import os
import shutil

import pytest

from edgekit.results import store
from tests.conftest import run_cli
from tests.store.test_store import EVAL, MANIFEST, profile_result

HOSTILE = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


def unprivileged() -> list[str]:
    """A prefix that makes the CLI obey file modes: root would write into a 0555 folder anyway."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: a read-only folder cannot be enforced")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]


def _filled_db(folder):
    db = folder / "results.db"
    store.record("profile", profile_result(), manifest=MANIFEST, device={"name": "pi", "kind": "ssh"}, db=db)
    store.record("eval", EVAL, manifest=MANIFEST, device={"name": "pi", "kind": "ssh"}, db=db)
    return db


def test_runs_list_and_report_read_a_database_in_a_read_only_folder(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "shared-results"
    folder.mkdir()
    db = _filled_db(folder)
    before = sorted(p.name for p in folder.iterdir())
    folder.chmod(0o555)
    try:
        prefix = unprivileged()

        def cli(*args):
            return subprocess.run(
                [*prefix, sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=120
            )

        probe = subprocess.run([*prefix, "touch", str(folder / "x")], capture_output=True)
        assert probe.returncode != 0, "the folder must really be read-only for this test"
        listed = cli("runs", "list", "--db", str(db), "--json")
        assert listed.returncode == 0, listed.stderr
        assert [r["kind"] for r in json.loads(listed.stdout)["runs"]] == ["eval", "profile"]
        out = tmp_path / "report.md"
        rep = cli("report", "--db", str(db), "--format", "md", "-o", str(out))
        assert rep.returncode == 0, rep.stderr
        assert "mobilenet_v1_025_32" in out.read_text()
        assert sorted(p.name for p in folder.iterdir()) == before  # nothing written next to it
        # writing there is still refused with one line (and the measurement would be kept)
        show = cli("runs", "show", "1", "--db", str(db), "--json")
        assert show.returncode == 0 and json.loads(show.stdout)["kind"] == "profile"
    finally:
        folder.chmod(0o755)


def test_markdown_report_escapes_html(tmp_path):
    db = tmp_path / "r.db"
    manifest = copy.deepcopy(MANIFEST)
    manifest["name"] = f"net{HOSTILE}"
    ev = {**EVAL, "tflite": {**EVAL["tflite"], "per_class": {IMG: 0.5, "ok": 1.0}}}
    store.record("profile", profile_result(), manifest=manifest, device={"name": f"pi{IMG}", "kind": "ssh"}, db=db)
    rid = store.record("eval", ev, manifest=manifest, device={"name": f"pi{IMG}", "kind": "ssh"}, db=db)
    proc = run_cli("report", "--db", str(db), "--format", "md", "--run", str(rid), "--title", f"T{HOSTILE}")
    text = proc.stdout
    assert "mobilenet" in text or "net" in text
    for raw in ("<script", "<img", "</script>"):
        assert raw not in text, raw
    assert "&lt;script&gt;" in text and "&lt;img" in text
