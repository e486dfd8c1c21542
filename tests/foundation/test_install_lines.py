"""The README's install lines, scripts/setup.sh and CI (.ci/run) install the same extras."""

from __future__ import annotations

import re

from tests.conftest import REPO

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


def _extras(text: str) -> list[set[str]]:
    """The extras of every `pip install -e ".[a,b]"` in a text, one set per line."""
    return [set(m.split(",")) for m in re.findall(r"pip install (?:-q )?-e ['\"]\.\[([a-z0-9,-]+)\]['\"]", text)]


def test_readme_setup_and_ci_agree_on_extras():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Install", 1)[1].split("```", 2)[1]  # the Install section's code block
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    readme_desktop = _extras(install)[:3]  # the desktop line, the PyTorch line, the backends line
    assert readme_desktop == _extras(setup) == [{"tf", "dev", "onnx", "quantizer"}, {"onnx-test"}, {"backends-test"}]
    # CI runs the README's test command, which runs setup.sh
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "bash scripts/setup.sh" in (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    assert "bash scripts/test.sh" in readme.split("## Install", 1)[0]
    # every extra named anywhere exists in pyproject.toml
    declared = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    named = set().union(*_extras(readme), *_extras(setup))
    assert named <= declared, named - declared
