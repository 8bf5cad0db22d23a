"""Regenerate every generated block of README.md and docs/*.md from the studies' committed data.

    .venv/bin/python scripts/docs.py            # rewrite the blocks in place
    .venv/bin/python scripts/docs.py --check    # exit 1 and show the difference if any block is stale

A block sits between `<!-- generated: NAME -->` and `<!-- /generated: NAME -->`; its text comes from
the `blocks()` of the study script that owns NAME (scripts/claims.py, scripts/porting_claim.py,
scripts/reproduction.py; what the README says about the tests, from the tests), computed from the
data files beside the document. Findings (numbers, verdict
words) live only in blocks; the prose around them explains and is written by hand."""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import claims  # noqa: E402
import porting_claim  # noqa: E402
import reproduction  # noqa: E402
import study  # noqa: E402

BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w.-]+) -->\n)(?P<body>.*?)(<!-- /generated: (?P=name) -->)", re.S)
DOCUMENTS = ("README.md", "docs/*.md")


def test_blocks() -> dict[str, str]:
    """What the README says about the tests, read from the tests: the kills of the kill-and-resume
    tests, by default and under `-m chaos`."""
    tree = ast.parse((study.ROOT / "tests" / "test_reliability.py").read_text())
    kills = {}
    for f in (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")):
        chaos = any("chaos" in ast.unparse(d) for d in f.decorator_list)
        for call in (n for n in ast.walk(f) if isinstance(n, ast.Call) and ast.unparse(n.func) == "chaos"):
            k = next(int(ast.literal_eval(kw.value)) for kw in call.keywords if kw.arg == "kills")
            kills["chaos" if chaos else "default"] = k
    return {
        "readme-kills": f"The default tests kill each framework's run {kills['default']} time(s); "
        f"`./test.sh -m chaos` does {kills['chaos']} per framework."
    }


def _flags(action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
    meta = action.metavar or (action.dest.upper() if action.nargs != 0 and action.option_strings else "")
    return names + (f" {meta}" if meta and action.option_strings else "")


def cli_blocks() -> dict[str, str]:
    """The command reference and the presets, written from the parser and the presets themselves, so
    a command or flag cannot exist in one and not the other."""
    from compare import cli
    from compare.render import render_md
    from shared import config as cfg

    parser = cli.build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in subs._choices_actions}
    out = []
    for name, sub in subs.choices.items():
        rows = [
            [_flags(a), " ".join((a.help or "").replace("%(default)s", str(a.default)).split())]
            for a in sub._actions
            if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS
        ]
        out += [
            f"### `fmnist-parity {name}`",
            "",
            (sub.description or helps.get(name) or "").strip(),
            "",
            render_md([("table", ["option", "what it does"], rows)], set()),
        ]
    presets = [f"- `{name}`: {p.provenance}" for name, p in cfg.PRESETS.items()]
    return {"commands-reference": "\n".join(out).rstrip(), "presets-list": "\n".join(presets)}


def all_blocks() -> dict[str, str]:
    out: dict[str, str] = {**test_blocks(), **cli_blocks()}
    for module in (claims, porting_claim, reproduction):
        for name, text in module.blocks().items():
            if name in out:
                raise SystemExit(f"block {name!r} is defined twice")
            out[name] = text
    return out


def documents(root: Path = study.ROOT) -> list[Path]:
    return sorted({p for pattern in DOCUMENTS for p in root.glob(pattern)})


def render(text: str, blocks: dict[str, str], where: str) -> str:
    def fill(m: re.Match) -> str:
        if m["name"] not in blocks:
            raise SystemExit(f"{where}: no study defines the generated block {m['name']!r}")
        return f"{m[1]}{blocks[m['name']].rstrip()}\n{m[4]}"

    return BLOCK.sub(fill, text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs from its data")
    args = p.parse_args()
    blocks, stale = all_blocks(), []
    for doc in documents():
        old = doc.read_text()
        new = render(old, blocks, str(doc.relative_to(study.ROOT)))
        if new == old:
            continue
        stale.append(doc)
        if args.check:
            sys.stdout.writelines(
                difflib.unified_diff(
                    old.splitlines(True), new.splitlines(True), f"{doc.name} (committed)", f"{doc.name} (from its data)"
                )
            )
        else:
            doc.write_text(new)
    names = ", ".join(str(d.relative_to(study.ROOT)) for d in stale)
    if args.check and stale:
        print(f"stale generated blocks in {names}: run .venv/bin/python scripts/docs.py", file=sys.stderr)
        return 1
    print(f"rewrote {names}" if stale else "every generated block matches its data", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
