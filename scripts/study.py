"""What every study script shares: its runs as one committed CSV (one row per run and epoch), read from
sweep directories and merged into what is already committed; where they ran (provenance); and paired
effects in the study's words (compare.stats.effect, the one home of a verdict's words)."""

from __future__ import annotations

import csv
import datetime
import io
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from compare import stats as S  # noqa: E402
from shared.atomic import atomic_write  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "train_seconds", "eval_seconds")
MARGIN = 0.01  # +-1 pp: the tool's default equivalence margin on accuracy
ENVIRONMENT = ("cpu", "cpu_count", "python", "torch", "keras", "tensorflow", "threads")


def collect(roots: list[Path], fields: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """The completed runs under sweep directories (fmnist-parity run [--grid]): one row per epoch with
    the config's `fields`, framework, seed, epochs (the run's length) and METRICS; and each run's
    environment (for the provenance)."""
    rows, envs = [], []
    for root in roots:
        for run in sorted(root.glob("cells/*/runs/*-seed*")) + sorted(root.glob("runs/*-seed*")):
            status = json.loads((run / "status.json").read_text()) if (run / "status.json").exists() else {}
            if status.get("state") != "completed":
                continue
            meta = json.loads((run / "run.json").read_text())
            c, fw = meta["config"], run.name.rsplit("-seed", 1)[0]
            lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            base = {**{k: c[k] for k in fields}, "framework": fw, "seed": c["seed"], "epochs": c["epochs"]}
            rows += [{**base, "epoch": m["epoch"], **{k: m.get(k) for k in METRICS}} for m in lines]
            env = meta["environment"]
            done = status.get("updated")
            day = datetime.datetime.fromtimestamp(done, datetime.timezone.utc).date().isoformat() if done else None
            envs.append({"sweep": root.name, "framework": fw, "date": day, **{k: env.get(k) for k in ENVIRONMENT}})
    return rows, envs


def _typed(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"True": True, "False": False, "": None}.get(v, v)


def read(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: _typed(v) for k, v in r.items()} for r in csv.DictReader(f)]


def merge(path: Path, new: list[dict], key: tuple[str, ...]) -> list[dict]:
    """Write path = its rows with the runs in `new` replaced (a run: its `key` fields); sorted, so the
    file changes only where runs do."""
    old = read(path) if path.exists() else []
    runs = {tuple(r[k] for k in key) for r in new}
    rows = [r for r in old if tuple(r[k] for k in key) not in runs] + new
    cols = list(dict.fromkeys(k for r in rows for k in r))
    rows.sort(key=lambda r: tuple(str(r.get(k, "")) for k in (*key, "epoch")) + (int(r["epoch"]),))
    text = io.StringIO(newline="")
    w = csv.DictWriter(text, cols)
    w.writeheader()
    w.writerows(rows)
    atomic_write(path, lambda f: f.write(text.getvalue().encode()))
    return rows


def merge_provenance(path: Path, envs: list[dict]) -> None:
    """One line per (sweep, framework, environment) that contributed runs; kept across merges."""
    kept = json.loads(path.read_text()) if path.exists() else []
    for e in envs:
        if e not in kept:
            kept.append(e)
    atomic_write(path, lambda f: f.write((json.dumps(kept, indent=1) + "\n").encode()))


def curves(rows: list[dict], key: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """{run key: its epoch rows in order}"""
    out: dict[tuple, list[dict]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in key), []).append(r)
    return {k: sorted(v, key=lambda r: r["epoch"]) for k, v in out.items()}


def epochs_to(curve: list[dict], target: float) -> int | None:
    return next((r["epoch"] for r in curve if r["test_acc"] >= target), None)


def epochs_needed(curve: list[dict], target: float) -> int:
    """Epochs to the target; a run that never reached it counts as its length + 1 (a lower bound)."""
    return epochs_to(curve, target) or len(curve) + 1


def median(values) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def pp(e: dict, **kw) -> str:
    """An effect on accuracy in words, percentage points."""
    return S.says(e, **kw)


def epochs(e: dict, directions=("more epochs", "fewer epochs")) -> str:
    """An effect on epochs-to-target in words (unit: epochs)."""
    return S.says(e, unit=1, suffix=" epochs", digits=1, directions=directions)


def provenance(path: Path) -> str:
    """The provenance lines of a study: where and with what each sweep ran."""
    lines = []
    for e in json.loads(path.read_text()):
        libs = ", ".join(f"{k} {e[k]}" for k in ("torch", "keras", "tensorflow") if e.get(k))
        lines.append(
            f"- `{e['sweep']}` ({e['framework']}): {e.get('date') or 'date not recorded'}, "
            f"{e.get('cpu_count')}-core {e.get('cpu')}, Python {e.get('python')}, {libs}, "
            f"threads={e.get('threads')}"
        )
    return "\n".join(sorted(set(lines)))


def lockstep_table(rec: dict, steps=(1, 5, 20, 100)) -> str:
    """A lockstep record (lockstep.json) as a table: each pair's relative L2 weight distance from the
    reference at some snapshot steps and at the end, against the noise floor, and its verdict."""
    out = []
    for entry in rec["results"]:

        def at(d: dict) -> list[str]:
            snap = dict(zip(d["snap_steps"], d["rel_l2"]))
            return [f"{snap[s]:.1e}" if s in snap else "" for s in steps] + [f"{d['final_rel_l2']:.1e}"]

        out += [
            f"**{entry['name']}** (relative L2 distance of all weights from PyTorch's, after step ...)",
            "",
            "| pair | cell | " + " | ".join(f"step {s}" for s in steps) + " | last step | max rel., last | verdict |",
            "|---|---|" + "---|" * (len(steps) + 3),
            "| PyTorch vs PyTorch, 1 unit moved (floor) | | "
            + " | ".join(at(entry["floor"]))
            + f" | {entry['floor']['final_max_rel']:.1e} | |",
        ]
        out += [
            f"| {p['a']} | {p['cell']} | " + " | ".join(at(p)) + f" | {p['final_max_rel']:.1e} | {p['verdict']} |"
            for p in entry["pairs"]
        ]
        out.append("")
    return "\n".join(out).rstrip()


def bench_block(path: Path) -> str:
    """A committed bench record (bench.json) as the bench's own Markdown, without its title."""
    if not path.exists():
        return (
            f"(no bench record committed at {path.relative_to(ROOT)}: run the bench command, then copy its bench.json)"
        )
    from compare import bench

    return bench.markdown(json.loads(path.read_text())).split("\n", 2)[2].strip()
