"""Reliability: random kills (also inside checkpoint and record writes) then resume, bit for bit;
SIGINT/SIGTERM stop cleanly; one live writer per directory; damaged checkpoints; the harness
killed mid-comparison. The long fault-injection run is opt-in: ./test.sh -m chaos."""

import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SMALL_2
from helpers import IMPLS, env, metrics, train
from compare import diff
from shared import weights

TIMING = ("train_seconds", "eval_seconds", "samples_per_second")
# the porting preset: native dropout, batch norm, AdamW, clipping and a cosine schedule, so a resume
# must also restore the random generators, the running statistics and the schedule's position
SMALL = [
    "--epochs",
    "4",
    "--preset",
    "porting",
    "--set",
    "threads=1",
    "--set",
    "hidden=64,64",
    "--set",
    "batch_size=512",
]


def strip(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def same_weights(a: Path, b: Path) -> bool:
    x, y = np.load(a), np.load(b)
    return x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)


def start(who, out, *args, extra_env=None, **kw):
    module, *extra = IMPLS[who]
    return subprocess.Popen(
        [sys.executable, "-m", module, "--out", str(out), "--quiet", *extra, *args],
        env={**env(), **(extra_env or {})},
        cwd=REPO,
        text=True,
        **kw,
    )


def wait_for(cond, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def epochs_done(run: Path) -> int:
    try:
        return len(metrics(run))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def alive_with(text: str) -> list[int]:
    """PIDs of live processes whose command line mentions `text` (our children, by their --out)."""
    pids = []
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit() and text in (d / "cmdline").read_bytes().decode(errors="replace"):
                if (d / "stat").read_text().split()[2] != "Z":
                    pids.append(int(d.name))
        except OSError:
            pass
    return pids


def chaos(who: str, tmp_path: Path, kills: int, seed: int, write_first: bool = False) -> dict:
    """Kill a run `kills` times, alternating a random moment and the middle of a random atomic write
    (checkpoint, its digest, metrics, status, weights), starting with the write if `write_first`,
    resuming each time; then let it finish."""
    rng = random.Random(seed)
    t0 = time.time()
    train(who, tmp_path / "full", *SMALL)
    wall, epochs = time.time() - t0, int(SMALL[1])
    epoch_s = sum(r["train_seconds"] + r["eval_seconds"] for r in metrics(tmp_path / "full")) / epochs
    startup = max(wall - epochs * epoch_s, 0.5)
    run, log = tmp_path / "chaos", {"random_moment": 0, "inside_write": 0, "epochs_at_kill": [], "restarts": 0}
    done_in = None  # how long a run that finished before its kill took: the next kill comes within it (a
    # reference run timed while the other worker was busy overestimates start-up: the window could miss every run)
    while log["random_moment"] + log["inside_write"] < kills:
        in_write = (log["random_moment"] + log["inside_write"] + write_first) % 2 == 1
        left = epochs - epochs_done(run)
        writes = 4 + 4 * left + (not (run / "status.json").exists())  # run, status, per epoch 4, final 2
        p = start(
            who,
            run,
            *SMALL,
            "--resume",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            extra_env={"FMNIST_PARITY_KILL_IN_WRITE": str(rng.randint(1, writes))} if in_write else None,
        )
        try:
            window = (
                None
                if in_write
                else rng.uniform(startup / 2, startup + left * epoch_s)
                if done_in is None
                else rng.uniform(0.3, 0.9) * done_in
            )
            began = time.time()
            _, err = p.communicate(timeout=window)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            rc = p.returncode
        if rc == 0:  # it finished before the kill came: begin again, so every kill lands mid-run
            shutil.rmtree(run)
            log["restarts"] += 1
            done_in = time.time() - began if not in_write else done_in
            continue
        assert rc == -signal.SIGKILL, err[-2000:]
        log["inside_write" if in_write else "random_moment"] += 1
        log["epochs_at_kill"].append(epochs_done(run))
    train(who, run, *SMALL, "--resume")
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    assert same_weights(tmp_path / "full" / "weights" / "final.npz", run / "weights" / "final.npz")
    assert strip(metrics(run)) == strip(metrics(tmp_path / "full"))
    assert not list(run.rglob("*.tmp")), "a killed write left a temp file behind"
    assert "final weights: identical, bit for bit (batch-norm state included)" in diff.describe(tmp_path / "full", run)
    assert len(weights.load_norms(run / "weights" / "final.npz")["bn"]) == 2
    return log


@pytest.mark.parametrize("who,kind", [("pytorch", "random_moment"), ("keras", "inside_write")])
def test_random_kills_then_resume_is_bit_identical(who, kind, tmp_path):
    """One kill per framework: PyTorch's at a random moment, Keras' inside a random atomic write (the
    other way round and 20 kills each: -m chaos)."""
    log = chaos(who, tmp_path, kills=1, seed=1, write_first=kind == "inside_write")
    assert log[kind] == 1 and log["random_moment"] + log["inside_write"] == 1
    print(who, log)


def small_disk(where: Path, kib: int) -> bool:
    """Mount a tmpfs of `kib` KiB at `where` (root only): a real disk that fills up. False if not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    return (
        os.geteuid() == 0
        and shutil.which("mount") is not None
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.parametrize("who", ["pytorch", pytest.param("keras", marks=pytest.mark.slow)])  # PyTorch's was the defect
def test_a_full_disk_ends_in_one_line_and_resume_continues_bit_for_bit(who, tmp_path, trained):
    """The disk fills up at epoch 2's checkpoint: a real one where this test may mount a small tmpfs on
    the checkpoints folder (it holds epoch 1's checkpoint, ~210 KB, not a second), else every write from
    that checkpoint on fails with ENOSPC (FMNIST_PARITY_FULL_DISK_AT). One line names the file, the cause
    and the command that resumes; nothing written before is lost; with space again, --resume gives the
    uninterrupted run's weights and metrics bit for bit."""
    run = tmp_path / "run"
    real = small_disk(run / "checkpoints", 320)
    try:
        ckpt = f"epoch-0002.{'pt' if who == 'pytorch' else 'npz'}"
        p = start(
            who,
            run,
            *SMALL_2,
            extra_env=None if real else {"FMNIST_PARITY_FULL_DISK_AT": ckpt},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = p.communicate(timeout=600)
        lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
        assert p.returncode == 2 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
        assert "No space left on device" in lines[0] and str(run) in lines[0], lines[0]
        assert "--resume" in lines[0] and "epochs done: 1" in lines[0], lines[0]
        assert epochs_done(run) == 1 and not list(run.rglob("*.tmp"))
        if real:
            subprocess.run(["mount", "-o", "remount,size=64m", str(run / "checkpoints")], check=True)
        train(who, run, *SMALL_2, "--resume")
        full = trained(who, *SMALL_2)
        assert same_weights(full / "weights" / "final.npz", run / "weights" / "final.npz")
        assert strip(metrics(run)) == strip(metrics(full))
    finally:
        if real:
            subprocess.run(["umount", str(run / "checkpoints")], capture_output=True)


@pytest.mark.chaos
@pytest.mark.parametrize("who", ["pytorch", "keras"])
def test_twenty_random_kills_then_resume_is_bit_identical(who, tmp_path):
    log = chaos(who, tmp_path, kills=20, seed=2)
    assert log["random_moment"] + log["inside_write"] == 20
    print(who, log)


# both go through shared/cli.py's handler: PyTorch's Ctrl-C by default, Keras' SIGTERM with -m slow
@pytest.mark.parametrize(
    "who,sig", [("pytorch", signal.SIGINT), pytest.param("keras", signal.SIGTERM, marks=pytest.mark.slow)]
)
def test_sigint_and_sigterm_stop_cleanly(who, sig, tmp_path):
    """PyTorch through `fmnist-parity train` (the user's command), Keras through its module: the resume
    hint names the command that was typed, and running it resumes."""
    run = tmp_path / "run"
    if who == "pytorch":
        typed = ["train", "--framework", "pytorch", "--out", str(run), "--quiet", *SMALL]
        p = subprocess.Popen(
            [sys.executable, "-m", "compare.cli", *typed],
            env=env(),
            cwd=REPO,
            text=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    else:
        p = start(who, run, *SMALL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: epochs_done(run) >= 1)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-2000:]
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].endswith(" --resume") and "Traceback" not in err, err
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "interrupted" and status["epoch"] == epochs_done(run) >= 1
    if who == "pytorch":
        hint = lines[0].split("resume with: ")[1]
        assert hint == shlex.join(["fmnist-parity", *typed, "--resume"]), hint
        r = subprocess.run(
            [sys.executable, "-m", "compare.cli", *shlex.split(hint)[1:]],
            env=env(),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stderr[-2000:]
    else:
        assert "python -m keras_impl" in lines[0]  # no user command to name: the module's own
        train(who, run, *SMALL, "--resume")
    assert json.loads((run / "status.json").read_text())["state"] == "completed"


def test_a_second_live_writer_is_refused_naming_the_holder(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from shared import rundir; "
            f"rundir.lock({str(run)!r}); print('locked', flush=True); time.sleep(120)",
        ],
        env=env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        r = train("pytorch", run, "--epochs", "1", "--resume", check=False)
        assert r.returncode == 2 and f"pid {holder.pid}" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock, no stale lock file blocks the next run
        holder.wait()
    train("pytorch", run, "--epochs", "1", "--set", "hidden=16")
    assert json.loads((run / "status.json").read_text())["state"] == "completed"


def test_damaged_checkpoints_fall_back_or_refuse_in_one_line(tmp_path, trained):
    args = SMALL_2
    full = trained("pytorch", *args)  # the uninterrupted run; a copy of it gets damaged
    run = tmp_path / "run"
    shutil.copytree(full, run)
    ck = sorted((run / "checkpoints").glob("epoch-*.pt"))

    def reopen():  # as if killed after the last epoch's checkpoint, before the run was marked complete
        st = json.loads((run / "status.json").read_text())
        (run / "status.json").write_text(json.dumps({**st, "state": "running"}))
        (run / "weights" / "final.npz").unlink()

    reopen()
    ck[-1].write_bytes(ck[-1].read_bytes()[:1000])  # truncated on disk
    r = train("pytorch", run, *args, "--resume", check=False)
    assert r.returncode == 0, r.stderr
    assert f"skipped damaged checkpoint {ck[-1]}" in r.stderr and "intact one of epoch 1" in r.stderr
    assert same_weights(full / "weights" / "final.npz", run / "weights" / "final.npz")
    reopen()
    for c in ck:
        c.write_bytes(c.read_bytes()[:100])
        Path(f"{c}.sha256").unlink()  # no digest either: the loader's own failure must be caught
    r = train("pytorch", run, *args, "--resume", check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and f"no intact checkpoint to resume from: {ck[-1]}" in r.stderr


@pytest.mark.slow  # the fallback is shared/runner.py's: PyTorch's damaged checkpoints test covers it by default
def test_keras_checkpoint_damage_without_digest_falls_back(tmp_path, trained):
    run = tmp_path / "run"
    shutil.copytree(trained("keras", *SMALL_2), run)
    st = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps({**st, "state": "running"}))
    last = run / "checkpoints" / "epoch-0002.npz"
    last.write_bytes(last.read_bytes()[:500])
    Path(f"{last}.sha256").unlink()
    r = train("keras", run, *SMALL_2, "--resume", check=False)
    assert r.returncode == 0 and "cannot be loaded" in r.stderr and "intact one of epoch 1" in r.stderr, r.stderr


def fmp(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "compare.cli", *args],
        env=env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        **kw,
    )


@pytest.mark.slow  # the harness killed twice over a whole comparison: about 50 s
def test_comparison_survives_sigterm_and_a_killed_harness(tmp_path, trained):
    args = ["run", "--epochs", "2", "--seeds", "1", "--set", "hidden=64,64", "--set", "threads=1"]
    out = tmp_path / "c"
    # the uninterrupted runs: the same config trained directly (the harness runs exactly that command)
    ref = {
        name: trained(name.split("-")[0], "--epochs", "2", "--set", "hidden=64,64", "--set", "threads=1")
        for name in ("pytorch-seed0", "keras-seed0")
    }
    harness = lambda: subprocess.Popen(
        [sys.executable, "-m", "compare.cli", *args, "--out", str(out)],
        env=env(),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    torch_run, keras_run = out / "runs" / "pytorch-seed0", out / "runs" / "keras-seed0"
    # 1. SIGTERM mid-way through the first run: the harness stops its child and says how to resume
    p = harness()
    wait_for(lambda: epochs_done(torch_run) >= 1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143 and "run the same command again" in err.splitlines()[-1], err[-2000:]
    assert not alive_with(str(out)), "the child outlived the harness"
    assert json.loads((torch_run / "status.json").read_text())["state"] == "interrupted"
    # 2. SIGKILL of the harness alone, during the second run: its child dies with it
    p = harness()
    wait_for(lambda: epochs_done(keras_run) >= 1 or (keras_run / "run.json").exists())
    p.kill()
    p.wait()
    wait_for(lambda: not alive_with(str(out)), timeout=30)
    torch_done = (torch_run / "metrics.jsonl").read_text()
    # 3. the same command again completes without redoing the finished run
    r = fmp(*args, "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pytorch seed 0: already finished, kept" in r.stderr and "keras seed 0: resuming" in r.stderr
    assert (torch_run / "metrics.jsonl").read_text() == torch_done
    b = json.loads((out / "summary.json").read_text())
    assert [x["state"] for x in b["runs"]] == ["completed", "completed"]
    assert {k: v["values"] for k, v in b["accuracy"].items()} == {
        name.split("-")[0]: [metrics(run)[-1]["test_acc"]] for name, run in ref.items()
    }
    for name, run in ref.items():
        assert strip(metrics(run)) == strip(metrics(out / "runs" / name))
        assert same_weights(run / "weights" / "final.npz", out / "runs" / name / "weights" / "final.npz")
    r = fmp("run", "--epochs", "3", "--seeds", "1", "--out", str(out))
    assert r.returncode == 2 and "holds a comparison with other config" in r.stderr


def test_a_crash_before_the_first_record_leaves_no_folder(tmp_path, data_dir, monkeypatch, capsys):
    """A run that fails once it holds its folder but before its first record (here: building the model
    raises, as an unsupported setting once did) takes the folders it made with it, and keeps one
    that existed."""
    from pytorch_impl import cli, train as impl
    from shared import cli as shared_cli

    def broken(config, env):
        raise ValueError("broken while building")

    monkeypatch.setattr(impl, "build", broken)
    argv = ["--epochs", "1", "--set", "hidden=16", "--set", "threads=1", "--data-dir", str(data_dir), "--quiet"]
    new = tmp_path / "a" / "new"
    assert shared_cli.main("pytorch", cli.load_impl, [*argv, "--out", str(new)]) == 1
    assert "broken while building" in capsys.readouterr().err and not (tmp_path / "a").exists()
    (tmp_path / "kept").mkdir()
    assert shared_cli.main("pytorch", cli.load_impl, [*argv, "--out", str(tmp_path / "kept")]) == 1
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "run.json").exists()
