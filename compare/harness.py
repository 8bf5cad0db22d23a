"""Side-by-side runs: every contestant x seed, one after another (parallel runs would share the CPU
and distort the timing), resuming what an earlier call left incomplete. Locally each contestant's runs
go to one worker process (`python -m <impl> serve`), which pays the start-up once; a run there trains
exactly as in a process of its own (the same numbers, tested)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared import config as cfg
from shared import rundir
from shared.atomic import atomic_write
from shared.cli import SERVED

# contestant label -> the command that trains it
CONTESTANTS = {
    "pytorch": ["-m", "pytorch_impl"],
    "keras": ["-m", "keras_impl", "--backend", "tensorflow"],
    "keras-torch": ["-m", "keras_impl", "--backend", "torch"],
    "keras-jax": ["-m", "keras_impl", "--backend", "jax"],
}
COMPARISON = "comparison.json"


class HarnessError(Exception):
    """A comparison that cannot run as asked; the message says what to do."""


@dataclass
class Job:
    contestant: str
    seed: int
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.contestant} seed {self.seed}"


def keras_label(backend: str) -> str:
    """The contestant label of Keras on a backend: keras (TensorFlow), keras-torch, keras-jax."""
    return "keras" if backend == "tensorflow" else f"keras-{backend}"


def contestants(frameworks: list[str], keras_backends: list[str]) -> list[str]:
    out = []
    for f in frameworks:
        if f not in ("pytorch", "keras"):
            raise HarnessError(f"--frameworks: unknown framework {f!r}; choose from pytorch, keras")
        out.append(f)
    for b in keras_backends:
        if b not in ("torch", "jax", "tensorflow"):
            raise HarnessError(f"--keras-backends: unknown backend {b!r}; choose from torch, jax")
        label = keras_label(b)
        if label not in out:
            out.append(label)
    if len(out) < 2:
        raise HarnessError("a comparison needs at least two contestants (e.g. --frameworks pytorch,keras)")
    return out


SEEDS_HELP = (
    "which seeds: a count (3 = seeds 0,1,2), a list (4,7), or an inclusive range (2-5 = 2,3,4,5); "
    "default 3. One seed numbered N: --seed N"
)


def parse_seeds(text: str, single: int | None = None) -> list[int]:
    """--seeds: '3' -> [0, 1, 2] (a count); '4,7' -> [4, 7] (a list); '2-5' -> [2, 3, 4, 5] (a range);
    --seed N (`single`) -> [N]."""
    if single is not None:
        if single < 0:
            raise HarnessError(f"--seed {single}: give a non-negative seed")
        return [single]
    text = str(text).strip()
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        elif "-" in text.lstrip("-"):
            lo, hi = (int(s) for s in text.split("-", 1))
            seeds = list(range(lo, hi + 1)) if hi >= lo else []
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise HarnessError(
            f"--seeds {text!r}: give a count (3), a comma-separated list (0,5,9) or a range (2-5); "
            f"one seed numbered N: --seed N"
        ) from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise HarnessError(
            f"--seeds {text!r}: need at least one distinct non-negative seed"
            + (" (a range runs from low to high, e.g. 2-5)" if "-" in text else "")
        )
    return seeds


def dtype_init_warning(configs: list[dict], labels: list[str]) -> str | None:
    """One line where dtypes are compared under native init with Keras: Keras draws its initial weights
    in the layer dtype, so one seed gives float32 and float64 runs different starting weights
    (PyTorch builds its layers in float32 and casts, so its start only rounds)."""
    if (
        len({c.get("dtype") for c in configs}) > 1
        and any(c.get("init") == "native" for c in configs)
        and any(l.startswith("keras") for l in labels)
    ):
        return (
            "warning: with init=native Keras draws its initial weights in the layer dtype, so the same seed starts "
            "float32 and float64 Keras runs from different weights (not just rounded); --set init=shared "
            "starts every dtype from the same draws"
        )
    return None


def plan(out: Path, config: cfg.RunConfig, seeds: list[int], labels: list[str], settings: dict) -> list[Job]:
    """Write (or check) comparison.json and return the jobs in run order (seed-major, so partial
    results already pair both frameworks)."""
    meta = {
        "format": "fmnist-parity-comparison",
        "version": 1,
        "config": config.to_dict(),
        "seeds": seeds,
        "contestants": labels,
        **settings,
    }
    path = out / COMPARISON
    if out.exists() and not path.exists() and any(p.name != rundir.LOCK for p in out.iterdir()):
        if any(out.rglob("run.json")):
            raise HarnessError(
                f"{out} holds runs made by `fmnist-parity train`, not a comparison; gather them into "
                f"one with: fmnist-parity collect {out} --out NEW_DIR (or choose another --out)"
            )
        raise HarnessError(f"{out} exists and is not a comparison directory; choose another --out")
    try:
        rundir.lock(out, "comparison directory")
    except rundir.LockedError as e:
        raise HarnessError(str(e)) from None
    if path.exists():
        old = json.loads(path.read_text())
        same = ("config", "seeds", "contestants")
        changed = [k for k in same if old.get(k) != meta[k]]
        if changed:
            raise HarnessError(
                f"{out} holds a comparison with other {', '.join(changed)}; "
                f"re-run with the same settings to resume it, or choose another --out"
            )
        meta["created"] = old.get("created", time.time())
    else:
        meta["created"] = time.time()
    atomic_write(path, lambda f: f.write((json.dumps(meta, indent=2) + "\n").encode()))
    return [Job(c, s, out / "runs" / f"{c}-seed{s}") for s in seeds for c in labels]


def job_state(job: Job) -> str:
    """fresh | resume | done (completed or diverged: a result either way)."""
    if not (job.run_dir / "status.json").exists():
        return "fresh"
    try:
        state = rundir.read_run(job.run_dir).status["state"]
    except rundir.RunFormatError:
        return "fresh"
    return "done" if state in ("completed", "diverged") else "resume"


def subcommand(contestant: str, name: str, *args: str) -> list[str]:
    """The command line of an implementation's subcommand (lockstep, defaults, bench) for a contestant."""
    module, rest = CONTESTANTS[contestant][:2], CONTESTANTS[contestant][2:]
    return [sys.executable, *module, name, *rest, *args]


def last_line(stderr: str) -> str:
    """The last non-empty line a failed child wrote: its one-line error."""
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    return lines[-1] if lines else ""


def command(contestant: str, cfg_path: Path, seed: int, run_dir: Path, data_dir: str, resume: bool) -> list[str]:
    """The one command line that trains a job (the local and the Ray engine both run it)."""
    cmd = [
        sys.executable,
        *CONTESTANTS[contestant],
        "--config",
        str(cfg_path),
        "--seed",
        str(seed),
        "--out",
        str(run_dir),
        "--data-dir",
        data_dir,
        "--keep-checkpoints",
        "2",
    ]
    return cmd + (["--resume"] if resume else [])


def die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when the harness dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 15)  # PR_SET_PDEATHSIG, SIGTERM
    except OSError:
        pass  # not Linux: the child may outlive a killed harness


class Worker:
    """A long-lived `python -m <impl> serve` process that trains one contestant's runs one after
    another: start-up (imports, framework initialisation) is paid once per contestant, not per run."""

    def __init__(self, contestant: str):
        self.proc = subprocess.Popen(
            [sys.executable, *CONTESTANTS[contestant][:2], "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            preexec_fn=die_with_parent,
        )

    def run(self, argv: list[str], on_line) -> int | None:
        """Train one run; its output lines go to on_line. The exit code, or None if the worker died."""
        try:
            self.proc.stdin.write(json.dumps({"argv": argv}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return None
        for line in self.proc.stdout:
            if line.startswith(SERVED):
                return int(line.split()[1])
            on_line(line.rstrip())
        return None

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # end of jobs: it exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                stop_child(self.proc)


def run_job(
    job: Job, config: cfg.RunConfig, data_dir: str, index: int, total: int, log, workers: dict | None = None
) -> int:
    """Train one job: in the contestant's worker from `workers` (started on first use), or in a
    process of its own when `workers` is None."""
    state = job_state(job)
    if state == "done":
        log(f"[{index}/{total}] {job.name}: already finished, kept")
        return 0
    if state == "fresh" and job.run_dir.exists():
        import shutil

        shutil.rmtree(job.run_dir)  # a run that never wrote its status: nothing to keep
    cfg_path = job.run_dir.parent / f".{job.run_dir.name}.config.json"
    atomic_write(cfg_path, lambda f: f.write(config.to_json().encode()))
    cmd = command(job.contestant, cfg_path, job.seed, job.run_dir, data_dir, state == "resume")
    log(f"[{index}/{total}] {job.name}: {'resuming' if state == 'resume' else 'starting'}")
    tail = []

    def show(line):  # the child's per-epoch lines, shown live
        nonlocal tail
        if line:
            tail = (tail + [line])[-20:]
            log(f"[{index}/{total}] {line}")

    if workers is None:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, preexec_fn=die_with_parent
        )
        try:
            for line in proc.stdout:
                show(line.rstrip())
            rc = proc.wait()
        except BaseException:  # SIGTERM/SIGINT to the harness: stop the child too (it marks itself interrupted)
            stop_child(proc)
            raise
    else:
        key = (job.contestant, *cfg.process_settings(config))
        if key not in workers:
            workers[key] = Worker(job.contestant)
        worker = workers[key]
        try:
            rc = worker.run(cmd[3:], show)  # the train arguments after `python -m <module>`
        except BaseException:
            stop_child(worker.proc)
            raise
        if rc is None:  # the worker died (a crash, the OOM killer): this run failed, the next gets a new one
            rc = worker.proc.wait()
            del workers[key]
    cfg_path.unlink(missing_ok=True)
    if rc == 2 and not (job.run_dir / "status.json").exists():  # refused before training: so would every job
        raise HarnessError(f"{job.name}: " + (tail[-1].removeprefix("error: ") if tail else "refused (exit 2)"))
    if rc not in (0, 3):
        log(
            f"[{index}/{total}] {job.name}: failed (exit {rc}); continuing. Last output:\n    "
            + "\n    ".join(tail[-5:])
        )
        ensure_failed_status(job, rc, tail)
    return rc


def stop_child(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_failed_status(job: Job, rc: int, tail: list[str]) -> None:
    """A run that died before writing a status still shows up in the report as failed."""
    if not (job.run_dir / "run.json").exists():
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "failed.txt").write_text(f"exit {rc}\n" + "\n".join(tail) + "\n")
    elif rundir.read_run(job.run_dir).status["state"] == "running":
        rundir.write_status(job.run_dir, "failed", f"exit {rc}: " + (tail[-1] if tail else ""))


def run_local(work: list[tuple[Job, cfg.RunConfig]], data_dir: str, log) -> None:
    """The local engine: every job in turn on this machine (timings stay honest), each contestant's
    in one worker process (its start-up paid once)."""
    workers = {}
    try:
        for i, (job, config) in enumerate(work, 1):
            run_job(job, config, data_dir, i, len(work), log, workers)
    finally:
        for w in workers.values():
            w.close()
