"""The comparison harness: report from fixture run directories, the browser check, diff, and
real end-to-end runs (tiny epoch counts) including resume of an interrupted comparison."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from compare import report, stats as S
from compare.harness import HarnessError, dtype_init_warning, parse_seeds, plan
from conftest import ONE_EPOCH, REPO
from helpers import env
from shared import config as cfg, rundir

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def fake_run(path: Path, framework: str, backend, config: cfg.RunConfig, accs: list[float], epoch_s: float):
    rundir.write_run(
        path,
        {
            "framework": framework,
            "backend": backend,
            "config": config.to_dict(),
            "environment": {"device": "cpu", "threads": 2, "framework_version": "x"},
            "data": {"source": "fixture", "sha256": {"train-images-idx3-ubyte": "abc"}},
            "timing": {"startup_seconds": 2.0, "data_seconds": 0.5},
        },
    )
    rows = [
        dict(
            epoch=e + 1,
            train_loss=1 - a,
            train_acc=a,
            test_loss=1.1 - a,
            test_acc=a,
            train_seconds=epoch_s * (2 if e == 0 else 1),
            eval_seconds=0.1,
            samples_per_second=60000 / epoch_s,
        )
        for e, a in enumerate(accs)
    ]
    rundir.write_metrics(path, rows)
    rundir.write_status(path, "completed", "", len(rows))


FINAL = {"pytorch": [0.881, 0.884, 0.879], "keras": [0.883, 0.880, 0.882]}


def fixture_comparison(root: Path, lr=0.05, keras_state="completed") -> Path:
    c = cfg.resolve("standard", [f"lr={lr}"], {"epochs": 3})
    jobs = plan(root, c, [0, 1, 2], ["pytorch", "keras"], {"margin": 0.01, "target_acc": 0.85, "reproduce": "x"})
    for job in jobs:
        final = FINAL[job.contestant][job.seed]
        fake_run(
            job.run_dir,
            "pytorch" if job.contestant == "pytorch" else "keras",
            None if job.contestant == "pytorch" else "tensorflow",
            cfg.from_dict({"seed": job.seed}, c),
            [final - 0.04, final - 0.01, final],
            1.0 if job.contestant == "pytorch" else 2.0 + job.seed * 0.1,
        )
    if keras_state != "completed":
        rundir.write_status(jobs[-1].run_dir, keras_state, "loss became nan at epoch 2, step 5", 1)
    return root


def test_report_from_fixture_runs(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    s = report.write_report(comp)
    for f in (
        "report.md",
        "report.html",
        "summary.json",
        "accuracy.png",
        "loss.png",
        "epoch_time.png",
        "acc_diff_keras.png",
    ):
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


def fixture_defaults(comp: Path) -> None:
    """A defaults table beside the comparison: one difference this run leaves to each library, one it
    does not use (batch norm is off), each with a long command to measure it."""
    long = (
        "fmnist-parity lockstep --out comparisons/" + "x" * 240
    )  # one unbreakable token: only wrapping saves the width
    rows = [
        {
            "what": "dense kernel initialiser",
            "values": {"pytorch": "kaiming_uniform", "keras": "GlorotUniform"},
            "differ": True,
            "source": {"pytorch": "read", "keras": "read"},
            "consequence": "x",
            "config_key": "init (shared: same draws)",
            "measure": long,
        },
        {
            "what": "BatchNorm epsilon",
            "values": {"pytorch": "1e-05", "keras": "0.001"},
            "differ": True,
            "source": {"pytorch": "read", "keras": "read"},
            "consequence": "y",
            "config_key": "bn_eps",
            "measure": long,
        },
    ]
    (comp / "defaults.json").write_text(
        json.dumps(
            {"labels": ["pytorch", "keras"], "versions": {"pytorch": "a", "keras": "b"}, "rows": rows, "full": True}
        )
    )


def test_report_leads_with_the_verdict_and_folds_what_this_run_does_not_use(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    fixture_defaults(comp)
    report.write_report(comp)
    md, html = (comp / "report.md").read_text(), (comp / "report.html").read_text()
    order = [
        md.index(h) for h in ("## Verdict", "## Final test accuracy", "accuracy.png", "## What differs", "## Timing")
    ]
    assert order == sorted(order)
    used, unused = (
        md.index("| dense kernel initialiser"),
        md.index("1 more differences this run does not use: BatchNorm epsilon"),
    )
    assert used < unused and "| BatchNorm epsilon" not in md  # folded: named, not tabled, in Markdown
    assert "<details><summary>1 more differences this run does not use</summary>" in html


@pytest.mark.skipif(BROWSER is None, reason="chromium is installed by ./test.sh (scripts/test_deps.sh)")
def test_html_opens_in_headless_chromium(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    fixture_defaults(comp)
    report.write_report(comp)
    html = (comp / "report.html").read_text()
    assert 'src="data:image/png;base64,' in html and "<link" not in html and "http" not in html.split("<body")[0]
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    r = subprocess.run(
        [BROWSER, *flags, "--window-size=1400,1000", "--dump-dom", (comp / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'data-images="ok"' in r.stdout, "every embedded image decoded"
    assert 'data-hscroll="no"' in r.stdout, "no sideways scrollbar at 1400 px, long commands included"
    top = int(re.search(r'data-curves-top="(\d+)"', r.stdout)[1])
    assert top < 1000, f"the curves start below the fold ({top} px)"
    assert "Equivalent" in r.stdout or "No evidence either way" in r.stdout or "Different" in r.stdout
    shot = tmp_path / "shot.png"
    subprocess.run(
        [BROWSER, *flags, f"--screenshot={shot}", "--window-size=1200,1600", (comp / "report.html").as_uri()],
        capture_output=True,
        timeout=120,
    )
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


def test_diff_prints_figures_as_the_report_does():
    from compare.diff import _shown

    assert _shown("result.keras.median_epoch_seconds", 0.4973063830001365) == "0.497 s"
    assert _shown("result.final_test_acc", 0.88532) == "88.53%"
    assert _shown("result.pytorch.final_test_acc_mean", 0.8873) == "88.73%"
    assert _shown("config.lr", 0.05) == "0.05" and _shown("config.head", "seed") == "'seed'"
    assert _shown("config.lr", "(absent)") == "(absent)"


@pytest.mark.parametrize(
    "text,single,seeds",
    [
        ("3", None, [0, 1, 2]),
        ("1", None, [0]),
        ("4,7", None, [4, 7]),
        ("1,", None, [1]),
        ("2-5", None, [2, 3, 4, 5]),
        ("3", 1, [1]),
    ],
)
def test_seeds_are_a_count_a_list_a_range_or_one(text, single, seeds):
    assert parse_seeds(text, single) == seeds


@pytest.mark.parametrize("text", ["5-2", "1,1", "many", "-1", "1-x"])
def test_bad_seeds_say_what_is_allowed(text):
    with pytest.raises(HarnessError) as e:
        parse_seeds(text)
    assert repr(text) in str(e.value)


def test_seed_flag_is_one_numbered_seed_and_excludes_seeds(capsys):
    from compare.cli import build_parser

    for cmd in ("run", "ablate"):
        args = build_parser().parse_args([cmd, "--seed", "1"])
        assert parse_seeds(args.seeds, args.seed) == [1]
        with pytest.raises(SystemExit):
            build_parser().parse_args([cmd, "--seed", "1", "--seeds", "2"])
        assert "not allowed with argument" in capsys.readouterr().err
    assert "2-5" in build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # --help says it


def train_runs(root: Path, seeds=(0, 1, 2), **overrides) -> Path:
    """Run directories as `fmnist-parity train` leaves them, side by side in one folder."""
    c = cfg.resolve("standard", [f"{k}={v}" for k, v in overrides.items()], {"epochs": 3})
    for label, fw, backend in (("pytorch", "pytorch", None), ("keras", "keras", "tensorflow")):
        for seed in seeds:
            final = FINAL[label][seed]
            fake_run(
                root / f"{label}-{seed}",
                fw,
                backend,
                cfg.from_dict({"seed": seed}, c),
                [final - 0.04, final - 0.01, final],
                1.0,
            )
    return root


def test_collect_gathers_train_runs_into_a_comparison(tmp_path, capsys, data_dir):
    from compare.cli import main

    runs = train_runs(tmp_path / "runs")
    before = sorted(p.relative_to(runs) for p in runs.rglob("*"))
    assert main(["run", "--out", str(runs), "--epochs", "3", "--data-dir", str(data_dir), "--offline"]) == 2
    assert f"fmnist-parity collect {runs}" in capsys.readouterr().err  # run says how to gather them
    assert main(["collect", str(runs), "--out", str(tmp_path / "comp")]) == 0
    out = capsys.readouterr().out
    ref = report.write_report(fixture_comparison(tmp_path / "ref"))  # the same runs, made by the harness
    s = json.loads((tmp_path / "comp" / "summary.json").read_text())
    assert s["verdicts"][0]["sentence"] == ref["verdicts"][0]["sentence"] and s["verdicts"][0]["sentence"] in out
    assert s["comparison"]["seeds"] == [0, 1, 2] and s["comparison"]["contestants"] == ["pytorch", "keras"]
    assert sorted(p.relative_to(runs) for p in runs.rglob("*")) == before  # the originals are left alone


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda d: (train_runs(d / "a"), train_runs(d / "b", seeds=(0,), lr=0.1)), "lr differ"),
        (lambda d: (train_runs(d / "a"), train_runs(d / "b", seeds=(1,))), "two runs of"),
        (lambda d: [shutil.rmtree(p) for p in train_runs(d / "a").glob("keras-*")], "at least two contestants"),
        (lambda d: (d / "a").mkdir(), "holds no run directory"),
    ],
)
def test_collect_refuses_runs_that_are_not_one_comparison(make, needle, tmp_path, capsys):
    from compare.cli import main

    make(tmp_path)
    args = [str(tmp_path / "a")] + ([str(tmp_path / "b")] if (tmp_path / "b").exists() else [])
    assert main(["collect", *args, "--out", str(tmp_path / "comp")]) == 2
    assert needle in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "comp").exists()


def test_comparing_dtypes_under_native_init_warns_about_keras_draws(tmp_path, capsys):
    from compare.cli import main

    for dtype in ("float32", "float64"):
        for init in ("native", "shared"):
            fake_run(
                tmp_path / f"{dtype}-{init}",
                "keras",
                "tensorflow",
                cfg.resolve("standard", [f"dtype={dtype}", f"init={init}"]),
                [0.8],
                1.0,
            )
    for init, warned in (("native", True), ("shared", False)):
        assert main(["diff", str(tmp_path / f"float32-{init}"), str(tmp_path / f"float64-{init}")]) == 0
        out = capsys.readouterr().out
        assert ("Keras draws its initial weights in the layer dtype" in out) == warned, out
    assert (
        dtype_init_warning(
            [{"dtype": "float32", "init": "native"}, {"dtype": "float64", "init": "native"}], ["pytorch"]
        )
        is None
    )  # PyTorch casts float32 draws: no warning


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


def test_end_to_end_real_data(tmp_path, trained):
    out = tmp_path / "c"
    r = fmp("run", *ONE_EPOCH, "--seeds", "2", "--out", str(out), "--fail-on-mismatch")
    s = json.loads((out / "summary.json").read_text())
    assert [x["state"] for x in s["runs"]] == ["completed"] * 4
    within = s["verdicts"][0]["final"]["within_margin"]  # --fail-on-mismatch: the equivalence test decides
    assert r.returncode == (0 if within else 1), r.stderr[-2000:]
    assert s["verdicts"][0]["sentence"] in r.stdout and "Speed: keras median epoch time is" in r.stdout
    assert f"Report: {(out / 'report.html').resolve()}" in r.stdout
    assert all(0.7 < a < 1 for l in ("pytorch", "keras") for a in s["accuracy"][l]["values"])
    assert "[4/4] keras seed 1: starting" in r.stderr  # live progress of every run
    # each contestant's runs share one worker process: every run equals the same run in a process of its own
    timing = ("train_seconds", "eval_seconds", "samples_per_second")
    strip = lambda run: [
        {k: v for k, v in json.loads(l).items() if k not in timing}
        for l in (run / "metrics.jsonl").read_text().splitlines()
    ]
    for who in ("pytorch", "keras"):
        for seed in (0, 1):
            alone = trained(who, *ONE_EPOCH, *(["--seed", "1"] if seed else []))
            served = out / "runs" / f"{who}-seed{seed}"
            assert strip(served) == strip(alone), (who, seed)
            a, b = np.load(alone / "weights" / "final.npz"), np.load(served / "weights" / "final.npz")
            assert all(np.array_equal(a[k], b[k]) for k in a.files), (who, seed)
    # the "why" part opens with what differs out of the box, what this run does about it, how to measure it
    md = (out / "report.md").read_text()
    assert md.index("## Final test accuracy") < md.index("## What differs out of the box") < md.index("## Timing")
    rows = {l.split(" | ")[0].strip("| "): l for l in md.splitlines() if l.startswith("| ")}
    assert (
        "each library's own" in rows["dense kernel initialiser"]
        and 'ablate --cells "matched init"' in rows["dense kernel initialiser"]
    )
    assert "negative_slope=0.01 on both" in rows["LeakyReLU slope (layer)"]
    # what this run does not use (batch norm is off) is folded: named in one line, not tabled
    assert "BatchNorm epsilon" not in rows and "BatchNorm epsilon" in next(
        l for l in md.splitlines() if "does not use" in l
    )
    assert (
        "SGD momentum" not in rows and "## Defaults: what differs" not in md
    )  # only the rows that differ, no full table
