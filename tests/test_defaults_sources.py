"""Every row of `fmnist-parity defaults` says how it knows its values, and a value shown as a library's
state follows that state: patch a library default (a signature default for a *read* row, the behaviour
for a *measured* row) and the table follows; an *idiom* row is labelled as written here. Each library
is probed in a process of its own, as the tool does (helpers.defaults_probe)."""

import pytest

from compare import defaults as D
from helpers import defaults_probe

PATCH = {
    "pytorch": """
import torch
class AdamW(torch.optim.AdamW):  # a library whose AdamW decays 0.05 by default
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, **kw):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **kw)
class LeakyReLU(torch.nn.LeakyReLU):  # ... whose LeakyReLU layer has slope 0.2
    def __init__(self, negative_slope=0.2, inplace=False):
        super().__init__(negative_slope, inplace)
def clip_each(parameters, max_norm, **kw):  # ... and whose clipping idiom clips each tensor alone
    for p in parameters:
        p.grad.mul_(max_norm / max(float(p.grad.norm()), max_norm))
torch.optim.AdamW, torch.nn.LeakyReLU, torch.nn.utils.clip_grad_norm_ = AdamW, LeakyReLU, clip_each
""",
    "keras": """
import keras
class AdamW(keras.optimizers.AdamW):  # a library whose AdamW decays 0.05 by default
    def __init__(self, learning_rate=0.001, weight_decay=0.05, **kw):
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kw)
class LeakyReLU(keras.layers.LeakyReLU):  # ... whose LeakyReLU layer has slope 0.2
    def __init__(self, negative_slope=0.2, **kw):
        super().__init__(negative_slope=negative_slope, **kw)
keras.optimizers.AdamW, keras.layers.LeakyReLU = AdamW, LeakyReLU
""",
}


def row(t: dict, what: str) -> dict:
    return next(r for r in t["rows"] if r["what"] == what)


@pytest.fixture(scope="module")
def pytorch(native_defaults):
    return native_defaults("pytorch"), defaults_probe("pytorch", PATCH["pytorch"])


def test_every_row_names_its_source(pytorch):
    native, _ = pytorch
    t = D.table({"pytorch": native, "again": native})
    kinds = {"read", "measured", "idiom"}
    assert not [(r["what"], r["source"]) for r in t["rows"] if not set(r["source"]["pytorch"].split(" + ")) <= kinds]
    assert row(t, "AdamW default weight_decay")["source"]["pytorch"] == "read"
    assert row(t, "LeakyReLU slope (layer)")["source"]["pytorch"] == "measured"
    assert row(t, "compilation")["source"]["pytorch"] == "idiom"
    assert row(t, "image data format")["source"]["pytorch"] == "measured"
    assert not any(r["differ"] for r in t["rows"])


def test_read_and_measured_rows_follow_a_patched_pytorch(pytorch):
    native, patched = pytorch
    t = D.table({"pytorch": native, "patched": patched})
    decay, slope = row(t, "AdamW default weight_decay"), row(t, "LeakyReLU slope (layer)")
    scope = row(t, "the idiom clips (measured)")
    assert decay["values"]["patched"] == "0.05" and decay["differ"] and decay["source"]["patched"] == "read"
    assert slope["values"]["patched"] == "0.2" and slope["differ"] and slope["source"]["patched"] == "measured"
    assert scope["values"]["patched"] == "per variable" and scope["differ"] and scope["source"]["patched"] == "measured"
    assert not row(t, "compilation")["differ"]  # an idiom is not library state: it does not move


def test_read_and_measured_rows_follow_a_patched_keras(native_defaults):
    t = D.table({"keras": native_defaults("keras"), "patched": defaults_probe("keras", PATCH["keras"])})
    decay, slope = row(t, "AdamW default weight_decay"), row(t, "LeakyReLU slope (layer)")
    assert decay["values"]["patched"] == "0.05" and decay["differ"] and decay["source"]["patched"] == "read"
    assert slope["values"]["patched"] == "0.2" and slope["differ"] and slope["source"]["patched"] == "measured"
    assert row(t, "Dropout masks come from")["source"]["keras"] == "idiom"
    assert row(t, "float32 matmul precision")["source"]["keras"] == "read"


def test_differ_compares_values_not_the_details_beside_them(pytorch):
    native, _ = pytorch
    mp = native["precision"]["matmul_precision"]
    other = {**native, "precision": {**native["precision"], "matmul_precision": {**mp, "detail": "said another way"}}}
    r = row(D.table({"pytorch": native, "other": other}), "float32 matmul precision")
    assert not r["differ"] and "said another way" in r["values"]["other"]
    stricter = {
        **native,
        "precision": {**native["precision"], "matmul_precision": {"value": "TF32 allowed", "detail": "x"}},
    }
    assert row(D.table({"pytorch": native, "other": stricter}), "float32 matmul precision")["differ"] == (
        mp["value"] != "TF32 allowed"
    )
