"""`fmnist-parity collect`: runs made one at a time with `fmnist-parity train` (one config, a seed
each) gathered into a comparison directory, so that `report`, `diff`, `tensorboard` and
`compare.load` read them like the runs `run` makes. The runs are copied, never moved: the
originals stay as they were."""

from __future__ import annotations

import shutil
from pathlib import Path

from compare import harness
from compare.harness import HarnessError
from shared import config as cfg
from shared import rundir


def find_runs(paths: list[Path]) -> list[Path]:
    """Each path is a run directory, or a folder whose run directories (at any depth) are taken."""
    found = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise HarnessError(
                f"{p}: no such directory; give run directories made by `fmnist-parity train` or folders holding them"
            )
        here = [p] if (p / "run.json").exists() else sorted(r.parent for r in p.rglob("run.json"))
        if not here:
            raise HarnessError(f"{p} holds no run directory (a folder with run.json, made by `fmnist-parity train`)")
        found += here
    return list(dict.fromkeys(r.resolve() for r in found))


def collect(paths: list[Path], out: Path, settings: dict) -> list[harness.Job]:
    """Check that the runs form one comparison (same config but the seed, one run per contestant and
    seed, at least two contestants), then lay them out as one. Returns the comparison's jobs."""
    runs = [rundir.read_run(p) for p in find_runs(paths)]
    no_seed = lambda rec: {k: v for k, v in rec.config.items() if k != "seed"}
    first, ref = runs[0], no_seed(runs[0])
    for rec in runs[1:]:
        mine = no_seed(rec)
        keys = sorted(k for k in mine.keys() | ref.keys() if mine.get(k) != ref.get(k))
        if keys:
            raise HarnessError(
                f"{rec.path} and {first.path} were trained with different settings "
                f"({', '.join(keys)} differ); a comparison holds runs of one config"
            )
    where = {}
    for rec in runs:
        key = (
            harness.keras_label(rec.meta["backend"]) if rec.meta["framework"] == "keras" else rec.label,
            rec.config["seed"],
        )
        if key in where:
            raise HarnessError(f"two runs of {key[0]} seed {key[1]}: {where[key]} and {rec.path}; give only one")
        where[key] = rec.path
    labels = [l for l in harness.CONTESTANTS if any(l == k[0] for k in where)]
    if len(labels) < 2:
        raise HarnessError(
            f"the runs are all {labels[0]}; a comparison needs runs of at least two contestants "
            f"(e.g. fmnist-parity train --framework keras ... with the same settings)"
        )
    seeds = sorted({s for _, s in where})
    config = cfg.from_dict({**first.config, "seed": seeds[0]})  # the seeds are listed apart
    jobs = harness.plan(Path(out), config, seeds, labels, settings)
    for job in jobs:
        src = where.get((job.contestant, job.seed))
        if src is None:
            continue  # the report lists it as missing
        if job.run_dir.exists():
            if job.run_dir.resolve() == src:
                continue
            raise HarnessError(f"{job.run_dir} already holds a run; collect into a new --out")
        shutil.copytree(src, job.run_dir, ignore=shutil.ignore_patterns(rundir.LOCK))
    return jobs
