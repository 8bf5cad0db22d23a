"""Results where people look: compare.load as a DataFrame, the TensorBoard export read back with
TensorBoard's own reader, the data set-up step's decision."""

import json
import sys

import numpy as np
import pytest

sys.path.insert(0, str(__import__("conftest").REPO / "scripts"))
import ensure_data  # noqa: E402
from helpers import python  # noqa: E402
from test_compare import fixture_comparison  # noqa: E402
from test_data import no_implicit_sources  # noqa: E402,F401  (the fixture)

import compare  # noqa: E402
from shared import rundir  # noqa: E402


def test_load_gives_one_row_per_contestant_seed_epoch(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    df = compare.load(comp)
    meta = json.loads((comp / "comparison.json").read_text())
    runs = [rundir.read_run(comp / "runs" / f"{c}-seed{s}") for c in meta["contestants"] for s in meta["seeds"]]
    assert len(df) == sum(len(r.metrics) for r in runs)
    assert set(df["contestant"]) == set(meta["contestants"]) and set(df["seed"]) == set(meta["seeds"])
    for col in ("epoch", "test_acc", "train_loss", "lr", "momentum", "hidden", "framework", "state"):
        assert col in df.columns, col
    r = runs[0]
    row = df[(df.contestant == meta["contestants"][0]) & (df.seed == meta["seeds"][0]) & (df.epoch == 1)].iloc[0]
    assert row.test_acc == r.metrics[0]["test_acc"] and row.lr == r.config["lr"]
    one = compare.load(comp / "runs" / f"{meta['contestants'][0]}-seed{meta['seeds'][0]}")
    assert len(one) == len(r.metrics) and list(one.test_acc) == [m["test_acc"] for m in r.metrics]


def test_tensorboard_export_reads_back_with_tensorboard(tmp_path):
    comp = fixture_comparison(tmp_path / "c")
    out = python(f"""
import sys, json
from compare.tensorboard import export, no_tensorflow
export({str(comp)!r}, {str(tmp_path / "tb")!r})
export({str(comp)!r}, {str(tmp_path / "tb")!r})  # again: replaces, does not duplicate
no_tensorflow()
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
m = EventMultiplexer()
m.AddRunsFromDirectory({str(tmp_path / "tb")!r})
m.Reload()
from tensorboard.util import tensor_util
# TensorBoard's writer stores scalars as scalar-class tensors (what its scalars dashboard reads)
got = {{run: {{tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in m.Tensors(run, tag)]
             for tag in m.Runs()[run]['tensors']}} for run in m.Runs()}}
print(json.dumps({{"got": got, "frameworks": [x for x in ('torch', 'tensorflow', 'jax', 'keras') if x in sys.modules]}}))
""")
    res = json.loads(out.strip().splitlines()[-1])
    assert res["frameworks"] == [], "the export imported a framework"
    meta = json.loads((comp / "comparison.json").read_text())
    from compare.tensorboard import TAGS

    assert sorted(res["got"]) == sorted(f"{c}/seed{s}" for c in meta["contestants"] for s in meta["seeds"])
    for c in meta["contestants"]:
        for s in meta["seeds"]:
            rows = rundir.read_run(comp / "runs" / f"{c}-seed{s}").metrics
            got = res["got"][f"{c}/seed{s}"]
            assert sorted(got) == sorted(TAGS)
            for tag, key in TAGS.items():
                assert got[tag] == [[m["epoch"], float(np.float32(m[key]))] for m in rows], tag


MACHINES = {
    "root": {"root": True, "sudo": False, "apt": True},
    "sudo": {"root": False, "sudo": True, "apt": True},
    "user": {"root": False, "sudo": False, "apt": True},
    "no apt": {"root": True, "sudo": False, "apt": False},
}


@pytest.mark.parametrize(
    "machine,action,needle",
    [
        ("root", "install", "apt-get"),
        ("sudo", "install", "sudo"),
        ("user", "advise", "sudo apt-get install dataset-fashion-mnist"),
        ("no apt", "advise", "--data-dir"),
    ],
)
def test_data_setup_decides_how_to_get_the_package(machine, action, needle):
    got, commands, message = ensure_data.decide(False, False, MACHINES[machine])
    assert got == action and ("installing" in message if action == "install" else "to fix it run" in message)
    assert needle in " ".join(" ".join(c) for c in commands) + message
    if action == "install":
        assert commands[-1][-1] == "dataset-fashion-mnist" and (commands[-1][0] == "sudo") == (machine == "sudo")
    assert ensure_data.decide(True, False, MACHINES[machine])[0] == "none"  # found: nothing to do
    assert ensure_data.decide(False, True, MACHINES[machine])[0] == "none"  # an explicit folder is the user's


def test_data_setup_installs_when_nothing_is_found(monkeypatch, no_implicit_sources, capsys):
    ran = []
    monkeypatch.setattr(ensure_data, "facts", lambda: MACHINES["root"])
    monkeypatch.setattr(
        ensure_data.subprocess,
        "run",
        lambda cmd, **kw: ran.append(cmd) or type("R", (), {"returncode": 1, "stderr": "E: no network"})(),
    )
    assert ensure_data.main(["run", "--offline"]) == 2  # the (fake) install failed: one line says so
    assert ran[-1][:2] == ["apt-get", "install"] and "dataset-fashion-mnist" in ran[-1]
    err = capsys.readouterr().err.strip().splitlines()
    assert "installing Debian's dataset-fashion-mnist" in err[-2] and err[-1].startswith("error: apt-get install")


def test_report_shows_sensible_precision_and_json_keeps_it(tmp_path):
    from compare import report

    comp = fixture_comparison(tmp_path / "c")
    s = report.write_report(comp)
    md = (comp / "report.md").read_text()
    row = next(l for l in md.splitlines() if l.startswith("| keras |") and "/3" in l)
    cells = [c.strip() for c in row.strip("|").split("|")]
    # keras epochs take 2.0, 2.1, 2.2 s: samples/s an integer, seconds 3 significant digits
    assert cells[3] == f"{s['timing']['keras']['samples_per_second']['mean']:.0f}" and "." not in cells[3]
    assert cells[1] == "2.1" and cells[2] == "4.2"
    saved = json.loads((comp / "summary.json").read_text())
    assert saved["timing"]["keras"]["samples_per_second"]["mean"] == s["timing"]["keras"]["samples_per_second"]["mean"]
    assert saved["timing"]["keras"]["samples_per_second"]["mean"] != round(
        saved["timing"]["keras"]["samples_per_second"]["mean"]
    )


def test_test_setup_prints_the_data_folder_or_says_what_to_do_in_one_line(
    monkeypatch, no_implicit_sources, capsys, tmp_path, data_dir
):
    monkeypatch.setattr(ensure_data, "BESIDE", tmp_path / "beside")  # no folder beside this checkout
    monkeypatch.setattr(ensure_data, "facts", lambda: MACHINES["user"])  # cannot install either
    assert ensure_data.main(["--print-dir", "--offline"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.strip().splitlines() == [
        "Fashion-MNIST not found and not downloadable; to fix it run: sudo apt-get install dataset-fashion-mnist"
    ]
    monkeypatch.setattr(ensure_data, "BESIDE", data_dir)  # the folder CI lays beside the checkout
    assert ensure_data.main(["--print-dir", "--offline"]) == 0
    assert capsys.readouterr().out.strip() == str(data_dir.resolve())
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path))  # explicit, but without the files: never worked around
    assert ensure_data.main(["--print-dir"]) == 2
    assert "FMNIST_DATA_DIR" in capsys.readouterr().err and ensure_data.find_without_download() == data_dir
