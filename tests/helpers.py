"""Run the implementations the way users do: each in its own process (frameworks never share one)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO, real_data_dir

IMPLS = {
    "pytorch": ["pytorch_impl"],
    "keras": ["keras_impl", "--backend", "tensorflow"],
    "keras-jax": ["keras_impl", "--backend", "jax"],
    "keras-torch": ["keras_impl", "--backend", "torch"],
}


def env():
    e = dict(os.environ)
    e["FMNIST_DATA_DIR"] = str(real_data_dir())
    e["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    )  # keeps carried packages
    return e


def train(who: str, out: Path, *args, check=True, timeout=600):
    module, *extra = IMPLS[who]
    cmd = [sys.executable, "-m", module, "--out", str(out), "--quiet", *extra, *args]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r


def predict(who: str, run: Path, weights: Path, out: Path, export: Path | None = None, sets=()):
    module, *extra = IMPLS[who]
    cmd = [
        sys.executable,
        "-m",
        module,
        "predict",
        "--run",
        str(run),
        "--weights",
        str(weights),
        "--out",
        str(out),
        *extra,
    ]
    if export:
        cmd += ["--export", str(export)]
    cmd += [a for s in sets for a in ("--set", s)]
    r = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]


def metrics(run: Path) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def python(code: str, timeout=600) -> str:
    """Run a snippet in a fresh interpreter (TensorFlow and torchvision crash in one process)."""
    r = subprocess.run(
        [sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def defaults_probe(label: str, patch: str = "") -> dict:
    """`defaults.probe()` of one contestant ("pytorch", "keras", ...) in a process of its own, as the tool
    does, after `patch` (code that changes a library default before the probe reads it)."""
    module, *rest = IMPLS[label]
    code = (
        "import sys, json\n"
        "from shared.environment import quiet_frameworks; quiet_frameworks()\n"
        f"from {module}.cli import load_impl\n"
        "from shared import config\n"
        f"load_impl({(rest[1] if rest else None)!r}, config.RunConfig(device='cpu'))\n"
        f"{patch}\n"
        f"from {module} import defaults\n"
        "print(json.dumps(defaults.probe(), default=str))\n"
    )
    return json.loads(python(code).strip().splitlines()[-1])
