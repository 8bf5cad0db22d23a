"""The code style: ruff (pinned in requirements.txt, configured in pyproject.toml) formats every file
and finds nothing to report. To fix: `.venv/bin/ruff format . && .venv/bin/ruff check --fix .`"""

import subprocess
import sys

from conftest import REPO


def ruff(*args):
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)


def test_every_file_is_formatted():
    r = ruff("format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_linter_finds_nothing():
    r = ruff("check", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_lint_test_can_fail(tmp_path):
    """The same configuration on a file with an unused import and a long unformatted line: both complain."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nx = [1,2,   3]\n")
    conf = ["--config", str(REPO / "pyproject.toml")]
    assert ruff("check", *conf, str(bad)).returncode == 1
    assert ruff("format", *conf, "--check", str(bad)).returncode == 1
