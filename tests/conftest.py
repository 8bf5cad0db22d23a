import contextlib
import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import ensure_data  # noqa: E402  (the set-up step ./run.sh and ./test.sh share)

# Found once, at start (the autouse fixture below removes FMNIST_DATA_DIR from each test's
# environment): ./test.sh sets it; a bare pytest looks where ./test.sh would, without downloading.
DATA_DIR_FROM_ENV = os.environ.get("FMNIST_DATA_DIR")
REAL_DATA = Path(DATA_DIR_FROM_ENV) if DATA_DIR_FROM_ENV else ensure_data.find_without_download()


def pytest_configure(config):
    """Under pytest-xdist (./test.sh runs two workers) each worker keeps to cores of its own, and so do
    the training processes its tests start (they inherit the affinity; threads=0 means the cores a
    process may use): two workers never fight over the same cores, which costs more than it gains."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if worker and count > 1 and hasattr(os, "sched_setaffinity"):
        cores, i = sorted(os.sched_getaffinity(0)), int(worker.removeprefix("gw"))
        os.sched_setaffinity(0, cores[i % count :: count] if len(cores) >= count else [cores[i % len(cores)]])


def real_data_dir() -> Path:
    """The official files for tests: $FMNIST_DATA_DIR, else where ./test.sh would find them."""
    if REAL_DATA is None or not (REAL_DATA / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(
            f"real Fashion-MNIST files not found ({REAL_DATA or 'nowhere'}); run ./test.sh, which finds "
            f"or installs them, or set FMNIST_DATA_DIR to the folder holding the four files"
        )
    return REAL_DATA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data_dir()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache; a session-wide parsed cache keeps real-data loads fast."""
    monkeypatch.setenv("FMNIST_PARITY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("FMNIST_RETRY_DELAY", "0")


# One epoch of a smaller standard net on one thread: the run several tests read without changing it.
ONE_EPOCH = ("--epochs", "1", "--set", "hidden=64,64", "--set", "threads=1")
# Two short epochs of a small net: for tests about records, diagnostics and checkpoints.
SMALL_2 = ("--epochs", "2", "--set", "hidden=32", "--set", "threads=1")


def _run_root(tmp_path_factory) -> Path:
    """The folder this test run's xdist workers share (a lone pytest's own base folder)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def _first_of_the_workers(lock: Path):
    """Hold an exclusive lock on `lock`: the first worker to ask makes the shared thing, the others wait."""
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def native_defaults(tmp_path_factory):
    """native_defaults(label) -> defaults.probe() of that library as installed, probed once per test run
    for all the xdist workers (each probe is a process importing its framework)."""
    from helpers import defaults_probe
    from shared.atomic import atomic_write

    root = _run_root(tmp_path_factory)

    def get(label: str) -> dict:
        path = root / f"defaults-probe-{label}.json"
        with _first_of_the_workers(root / f"defaults-probe-{label}.lock"):
            if not path.exists():
                atomic_write(path, lambda f: f.write(json.dumps(defaults_probe(label)).encode()))
        return json.loads(path.read_text())

    return get


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """trained(who, *args) -> a finished run directory, trained once per (implementation, arguments)
    for the whole test run, pytest-xdist workers included (the first to ask trains it under a file
    lock, the others wait and read it), and shared by the tests that only read it (a test that
    changes a run copies it first)."""
    import hashlib
    from helpers import train

    root = _run_root(tmp_path_factory)

    def get(who: str, *args: str) -> Path:
        key = hashlib.sha1(repr((who, args)).encode()).hexdigest()[:12]
        out = root / f"shared-{who}-{key}" / "run"
        with _first_of_the_workers(root / f"shared-{who}-{key}.lock"):
            status = out / "status.json"
            if not (status.exists() and json.loads(status.read_text())["state"] == "completed"):
                shutil.rmtree(out.parent, ignore_errors=True)
                train(who, out, *args)
        return out

    return get


# The modules whose tests take longest (a two-node Ray cluster, kills and resumes, lockstep and
# ablation): started first, so that the two workers of ./test.sh finish together.
LONG_FIRST = (
    "test_engines.py",
    "test_reliability.py",
    "test_why.py",
    "test_porting.py",
    "test_speed.py",
    "test_compare.py",
    "test_diagnostics.py",
)


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: LONG_FIRST.index(item.path.name) if item.path.name in LONG_FIRST else len(LONG_FIRST))
