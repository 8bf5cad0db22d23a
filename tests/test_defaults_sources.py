"""Every row of `fmnist-parity defaults` says how it knows its values, and a value shown as a library's
state follows that state: patch a library default (a signature default for a *read* row, the behaviour
for a *measured* row) and the table follows; an *idiom* row is labelled as written here."""
import inspect

import pytest

from compare import defaults as D

torch = pytest.importorskip("torch")
from pytorch_impl import defaults as PT  # noqa: E402


def row(t: dict, what: str) -> dict:
    return next(r for r in t["rows"] if r["what"] == what)


@pytest.fixture(scope="module")
def native():
    return PT.probe()


def test_every_row_names_its_source(native):
    t = D.table({"pytorch": native, "again": native})
    kinds = {"read", "measured", "idiom"}
    unsourced = [(r["what"], r["source"]) for r in t["rows"] if not set(r["source"]["pytorch"].split(" + ")) <= kinds]
    assert not unsourced
    assert row(t, "AdamW default weight_decay")["source"]["pytorch"] == "read"
    assert row(t, "LeakyReLU slope (layer)")["source"]["pytorch"] == "measured"
    assert row(t, "compilation")["source"]["pytorch"] == "idiom"
    assert row(t, "image data format")["source"]["pytorch"] == "measured"
    assert not any(r["differ"] for r in t["rows"])


def test_read_and_measured_rows_follow_a_patched_library(native, monkeypatch):
    class AdamW(torch.optim.AdamW):  # a library whose AdamW decays 0.05 by default
        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, **kw):
            super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kw)

    class LeakyReLU(torch.nn.LeakyReLU):  # ... whose LeakyReLU layer has slope 0.2
        def __init__(self, negative_slope=0.2, inplace=False):
            super().__init__(negative_slope, inplace)

    def clip_each(parameters, max_norm, **kw):  # ... and whose clipping idiom clips each tensor alone
        for p in parameters:
            n = float(p.grad.norm())
            p.grad.mul_(max_norm / max(n, max_norm))

    monkeypatch.setattr(torch.optim, "AdamW", AdamW)
    monkeypatch.setattr(torch.nn, "LeakyReLU", LeakyReLU)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_each)
    assert inspect.signature(torch.optim.AdamW).parameters["weight_decay"].default == 0.05
    t = D.table({"pytorch": native, "patched": PT.probe()})
    decay, slope, scope = row(t, "AdamW default weight_decay"), row(t, "LeakyReLU slope (layer)"), row(t, "the idiom clips (measured)")
    assert decay["values"]["patched"] == "0.05" and decay["differ"] and decay["source"]["patched"] == "read"
    assert slope["values"]["patched"] == "0.2" and slope["differ"] and slope["source"]["patched"] == "measured"
    assert scope["values"]["patched"] == "per variable" and scope["differ"] and scope["source"]["patched"] == "measured"
    assert not row(t, "compilation")["differ"]  # an idiom is not library state: it does not move


def test_differ_compares_values_not_the_details_beside_them(native):
    other = {**native, "precision": {**native["precision"], "matmul_precision": {
        "value": native["precision"]["matmul_precision"]["value"], "detail": "said another way"}}}
    r = row(D.table({"pytorch": native, "other": other}), "float32 matmul precision")
    assert not r["differ"] and "said another way" in r["values"]["other"]
    stricter = {**native, "precision": {**native["precision"], "matmul_precision": {"value": "TF32 allowed", "detail": "x"}}}
    assert row(D.table({"pytorch": native, "other": stricter}), "float32 matmul precision")["differ"] == \
        (native["precision"]["matmul_precision"]["value"] != "TF32 allowed")
