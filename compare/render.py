"""How the project writes what it found: the block structure every report and analysis uses
(("h1"|"h2"|"p", text), ("table", header, rows), ("img", file, alt), ("imgs", [(file, alt), ...]) side by
side, ("details", summary, blocks, markdown_line): folded in HTML, one line in Markdown) rendered as
Markdown or as self-contained HTML, the number formats, and a plot panel shared by the ablation and sweep.
The bottom of compare/: it imports nothing of compare/, so every analysis and the report can use it."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import numpy as np


def fmt(x, digits=4):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def secs(x):
    """Seconds to 3 significant digits (0.452, 12.3, 1230); the JSON keeps full precision."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def pct(x):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def render_md(blocks, images: set) -> str:
    out = []
    for b in blocks:
        if b[0] == "h1":
            out.append(f"# {b[1]}\n")
        elif b[0] == "h2":
            out.append(f"## {b[1]}\n")
        elif b[0] == "p":
            out.append(b[1] + "\n")
        elif b[0] == "img" and b[1] in images:
            out.append(f"![{b[2]}]({b[1]})\n")
        elif b[0] == "imgs":
            out += [f"![{alt}]({f})\n" for f, alt in b[1] if f in images]
        elif b[0] == "details":
            out.append(b[3] + "\n")
        elif b[0] == "table":
            esc = lambda x: str(x).replace("|", "\\|").replace("\n", " ")
            out.append("| " + " | ".join(map(esc, b[1])) + " |")
            out.append("|" + "---|" * len(b[1]))
            out += ["| " + " | ".join(map(esc, r)) + " |" for r in b[2]]
            out.append("")
    return "\n".join(out)


# Table cells wrap long values (commands, paths) instead of scrolling sideways (headers wrap at spaces only); images side by side share a row.
CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:13px;max-width:100%}td,th{border:1px solid #ccc;"
    "padding:3px 7px;text-align:left;vertical-align:top}td{overflow-wrap:anywhere}th{background:#f3f3f3}"
    "img{max-width:100%}.row{display:flex;gap:1%}.row img{max-width:49.5%}details{margin:1em 0}"
    "summary{cursor:pointer;font-weight:600}.broken{color:#b00}"
)
# Marks the page if an embedded image fails to decode (a reader sees it; the browser test checks it), and
# records the layout the browser test reads: a sideways scrollbar, and where the curves start.
SCRIPT = (
    "window.addEventListener('load',function(){var bad=[].filter.call(document.images,function(i){"
    "return !(i.complete&&i.naturalWidth>0)});document.body.dataset.images=bad.length?'broken':'ok';"
    "bad.forEach(function(i){var p=document.createElement('p');p.className='broken';"
    "p.textContent='image failed to load: '+i.alt;i.after(p)});"
    "document.body.dataset.hscroll=document.documentElement.scrollWidth>window.innerWidth?'yes':'no';"
    "var row=document.querySelector('.row');if(row)document.body.dataset.curvesTop=Math.round(row.getBoundingClientRect().top)});"
)


def _img(out: Path, file: str, alt: str) -> str:
    data = base64.b64encode((out / file).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _html_parts(blocks, out: Path, images: set) -> list[str]:
    parts = []
    for b in blocks:
        if b[0] in ("h1", "h2", "p"):
            parts.append(f"<{b[0]}>{html.escape(b[1])}</{b[0]}>")
        elif b[0] == "img" and b[1] in images:
            parts.append(_img(out, b[1], b[2]))
        elif b[0] == "imgs":
            parts.append('<div class="row">' + "".join(_img(out, f, alt) for f, alt in b[1] if f in images) + "</div>")
        elif b[0] == "details":
            parts.append(
                f"<details><summary>{html.escape(b[1])}</summary>"
                + "\n".join(_html_parts(b[2], out, images))
                + "</details>"
            )
        elif b[0] == "table":
            head = "".join(f"<th>{html.escape(str(h))}</th>" for h in b[1])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    return parts


def render_html(blocks, out: Path, images: set) -> str:
    parts = _html_parts(blocks, out, images)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>fmnist-parity report</title>'
        f'<style>{CSS}</style><script>{SCRIPT}</script></head><body data-images="pending">'
        + "\n".join(parts)
        + "</body></html>\n"
    )


def jsonable(x):
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return None
    return x


def accuracy_per_cell(ax, rows: list[dict], labels: list[str], title: str) -> None:
    """Final test accuracy per cell (rows with "cell" and "accuracy"[label] from stats.describe):
    the mean as a dot per contestant, each seed as a faint dot (ablation and sweep plots)."""
    x = np.arange(len(rows))
    for j, l in enumerate(labels):
        (line,) = ax.plot(
            x + 0.1 * j,
            [100 * r["accuracy"][l]["mean"] if r["accuracy"][l]["n"] else np.nan for r in rows],
            "o",
            label=l,
        )
        for i, r in enumerate(rows):
            ax.plot(
                [i + 0.1 * j] * r["accuracy"][l]["n"],
                [100 * v for v in r["accuracy"][l]["values"]],
                ".",
                color=line.get_color(),
                alpha=0.4,
            )
    ax.set_xticks(x, [r["cell"] for r in rows], rotation=20, ha="right", fontsize=8)
    ax.set(ylabel="final test accuracy (%)", title=title)
    ax.legend(fontsize=8)
