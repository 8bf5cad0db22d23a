"""The published findings cannot drift from their data: every generated block in README.md and docs/
is what scripts/docs.py computes from the committed data files, and breaking one number is caught."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import docs  # noqa: E402


def test_every_generated_block_matches_its_data():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr


def test_the_documents_have_generated_blocks():
    names = {m["name"] for d in docs.documents() for m in docs.BLOCK.finditer(d.read_text())}
    assert {"claims-cnn", "claims-augmentation", "porting-claim", "precision-seed-table"} <= names


def test_a_broken_number_is_caught(tmp_path):
    blocks = docs.all_blocks()
    doc = next(d for d in docs.documents() if "<!-- generated: claims-cnn -->" in d.read_text())
    text = doc.read_text()
    assert docs.render(text, blocks, doc.name) == text
    m = next(m for m in docs.BLOCK.finditer(text) if m["name"] == "claims-cnn")
    body = m["body"]
    broken = text.replace(body, body.replace("%", "1%", 1))
    assert broken != text and docs.render(broken, blocks, doc.name) == text  # regenerating restores it


def test_an_unknown_block_is_an_error():
    with pytest.raises(SystemExit, match="no study defines"):
        docs.render("<!-- generated: nonsense -->\nx\n<!-- /generated: nonsense -->\n", docs.all_blocks(), "X.md")


def test_the_command_reference_follows_the_parser(monkeypatch):
    """docs/COMMANDS.md is the parser's: a new flag (or command) the page lacks makes the check fail."""
    from compare import cli

    committed = (ROOT / "docs" / "COMMANDS.md").read_text()
    assert docs.render(committed, docs.all_blocks(), "COMMANDS.md") == committed
    build = cli.build_parser

    def with_new_flag():
        p = build()
        sub = next(a for a in p._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
        sub.choices["run"].add_argument("--brand-new-flag", help="not documented yet")
        return p

    monkeypatch.setattr(cli, "build_parser", with_new_flag)
    assert "--brand-new-flag" in docs.render(committed, docs.all_blocks(), "COMMANDS.md")
    for name in ("run", "lockstep", "bench", "defaults", "ablate", "presets"):
        assert f"### `fmnist-parity {name}`" in committed
