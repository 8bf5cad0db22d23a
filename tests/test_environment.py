"""The pins: one exact set, described identically by requirements.txt and environment.yml."""

import re
from importlib import metadata

from conftest import REPO


def pins(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(?:-\s+)?([A-Za-z0-9_.\-]+)==([^\s#]+)\s*(#.*)?$", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_requirements_are_exact_pins():
    lines = [l.split("#")[0].strip() for l in (REPO / "requirements.txt").read_text().splitlines()]
    lines = [l for l in lines if l]
    assert lines and all("==" in l for l in lines), "every requirement is pinned with =="
    assert pins("\n".join(lines))["torch"] == "2.14.1"


def test_environment_yml_matches_requirements():
    req = pins((REPO / "requirements.txt").read_text())
    env = pins((REPO / "environment.yml").read_text())
    assert env == req
    assert "python=3.11" in (REPO / "environment.yml").read_text()


def test_installed_versions_are_the_pins():
    req = pins((REPO / "requirements.txt").read_text())
    for name, version in req.items():
        assert metadata.version(name) == version, name


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    assert "./test.sh" in readme and "./run.sh" in readme
    assert "exec ./test.sh" in (REPO / ".ci" / "run").read_text()


def test_the_matmul_probe_names_what_products_round_to():
    """The defaults row reads TF32 and bfloat16 from a product's error, not from flags: inputs rounded to
    TF32's and bfloat16's mantissas (11 and 8 bits) are named as such, float32's own product as full."""
    import numpy as np

    from shared.environment import matmul_error, matmul_probe, matmul_rounding

    a, b, reference = matmul_probe()

    def rounded(x, bits):
        m, e = np.frexp(x.astype(np.float64))
        return np.ldexp(np.round(m * 2.0**bits) / 2.0**bits, e)

    name = lambda bits: matmul_rounding(matmul_error(rounded(a, bits) @ rounded(b, bits), reference))
    assert matmul_rounding(matmul_error(a @ b, reference)) == "full float32"
    assert [name(16), name(11), name(8)] == ["between TF32 and float32", "TF32 (10-bit mantissa)", "bfloat16 or lower"]
