"""The comparison harness: report from fixture run directories, the browser check, diff, and
real end-to-end runs (tiny epoch counts) including resume of an interrupted comparison."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from compare import report, stats as S
from compare.harness import plan
from conftest import REPO
from helpers import env
from shared import config as cfg, rundir

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_run(path: Path, framework: str, backend, config: cfg.RunConfig, accs: list[float], epoch_s: float):
    rundir.write_run(path, {"framework": framework, "backend": backend, "config": config.to_dict(),
                            "environment": {"device": "cpu", "threads": 2, "framework_version": "x"},
                            "data": {"source": "fixture", "sha256": {"train-images-idx3-ubyte": "abc"}},
                            "timing": {"startup_seconds": 2.0, "data_seconds": 0.5}})
    rows = [dict(epoch=e + 1, train_loss=1 - a, train_acc=a, test_loss=1.1 - a, test_acc=a,
                 train_seconds=epoch_s * (2 if e == 0 else 1), eval_seconds=0.1, samples_per_second=60000 / epoch_s)
            for e, a in enumerate(accs)]
    rundir.write_metrics(path, rows)
    rundir.write_status(path, "completed", "", len(rows))


FINAL = {"pytorch": [0.881, 0.884, 0.879], "keras": [0.883, 0.880, 0.882]}


def fixture_comparison(root: Path, lr=0.05, keras_state="completed") -> Path:
    c = cfg.resolve("standard", [f"lr={lr}"], {"epochs": 3})
    jobs = plan(root, c, [0, 1, 2], ["pytorch", "keras"], {"margin": 0.01, "target_acc": 0.85, "reproduce": "x"})
    for job in jobs:
        final = FINAL[job.contestant][job.seed]
        fake_run(job.run_dir, "pytorch" if job.contestant == "pytorch" else "keras",
                 None if job.contestant == "pytorch" else "tensorflow", cfg.from_dict({"seed": job.seed}, c),
                 [final - 0.04, final - 0.01, final], 1.0 if job.contestant == "pytorch" else 2.0 + job.seed * 0.1)
    if keras_state != "completed":
        rundir.write_status(jobs[-1].run_dir, keras_state, "loss became nan at epoch 2, step 5", 1)
    return root


def test_report_from_fixture_runs(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    s = report.write_report(comp)
    for f in ("report.md", "report.html", "summary.json", "accuracy.png", "loss.png", "epoch_time.png", "acc_diff_keras.png"):
        assert (comp / f).stat().st_size > 0, f
    assert s["accuracy"]["pytorch"]["values"] == FINAL["pytorch"]
    r = stats.ttest_ind(FINAL["keras"], FINAL["pytorch"], equal_var=False)
    v = s["verdicts"][0]
    assert v["final"]["welch"]["p"] == pytest.approx(r.pvalue)
    assert v["final"]["welch"]["ci"][0] == pytest.approx(r.confidence_interval().low)
    assert v["final"]["outcome"] == S.verdict(FINAL["keras"], FINAL["pytorch"], 0.01)["outcome"]
    ratio = s["speed_ratios"][0]
    assert ratio["values"] == pytest.approx([2.0, 2.1, 2.2]) and ratio["min"] == pytest.approx(2.0)
    assert s["timing"]["pytorch"]["first_epoch_seconds"]["mean"] == 2.0
    assert s["timing"]["pytorch"]["median_epoch_seconds"]["mean"] == 1.0
    assert s["timing"]["pytorch"]["time_to_target_seconds"]["mean"] == pytest.approx(3.0)  # 2 s + 1 s to 0.85
    md = (comp / "report.md").read_text()
    assert v["sentence"] in md and "Speed: a median training epoch of keras takes 2.10x" in md
    assert "| 3 |" in md  # the per-epoch table
    summary = json.loads((comp / "summary.json").read_text())
    assert summary["verdicts"][0]["sentence"] == v["sentence"]


def test_failed_and_diverged_runs_show_in_the_report(tmp_path):
    comp = fixture_comparison(tmp_path / "c", keras_state="diverged")
    s = report.write_report(comp)
    assert s["accuracy"]["keras"]["n"] == 2
    assert "keras seed 2: diverged loss became nan" in (comp / "report.md").read_text()


@pytest.mark.skipif(BROWSER is None, reason="chromium is installed by ./test.sh (scripts/test_deps.sh)")
def test_html_opens_in_headless_chromium(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    report.write_report(comp)
    html = (comp / "report.html").read_text()
    assert "src=\"data:image/png;base64," in html and "<link" not in html and "http" not in html.split("<body")[0]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    r = subprocess.run([BROWSER, *flags, "--dump-dom", (comp / "report.html").as_uri()],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'data-images="ok"' in r.stdout, "every embedded image decoded"
    assert "Equivalent" in r.stdout or "Not enough evidence" in r.stdout or "Different" in r.stdout
    shot = tmp_path / "shot.png"
    subprocess.run([BROWSER, *flags, f"--screenshot={shot}", "--window-size=1200,1600",
                    (comp / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 10000


def test_diff_names_the_settings_that_differ(tmp_path, capsys):
    from compare.cli import main
    a = fixture_comparison(tmp_path / "a")
    b = fixture_comparison(tmp_path / "b", lr=0.1)
    report.write_report(a), report.write_report(b)
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "lr: 0.05 -> 0.1" in out and "not directly comparable" in out
    assert main(["diff", str(a / "runs" / "pytorch-seed0"), str(a / "runs" / "keras-seed0")]) == 0
    out = capsys.readouterr().out
    assert "framework: 'pytorch' -> 'keras-tensorflow'" in out and "settings: identical" in out
    assert main(["diff", str(a), str(a / "runs" / "pytorch-seed0")]) == 2


def fmp(*args, **kw):
    return subprocess.run([sys.executable, "-m", "compare.cli", *args], env=env(), cwd=REPO,
                          capture_output=True, text=True, timeout=900, **kw)


def test_end_to_end_real_data(tmp_path):
    out = tmp_path / "c"
    r = fmp("run", "--epochs", "1", "--seeds", "2", "--out", str(out), "--fail-on-mismatch")
    s = json.loads((out / "summary.json").read_text())
    assert [x["state"] for x in s["runs"]] == ["completed"] * 4
    outcome = s["verdicts"][0]["final"]["outcome"]
    assert r.returncode == (0 if outcome == "equivalent" else 1), r.stderr[-2000:]
    assert s["verdicts"][0]["sentence"] in r.stdout and "Speed: keras median epoch time is" in r.stdout
    assert f"Report: {(out / 'report.html').resolve()}" in r.stdout
    assert all(0.7 < a < 1 for l in ("pytorch", "keras") for a in s["accuracy"][l]["values"])
    assert "[4/4] keras seed 1: starting" in r.stderr  # live progress of every run
