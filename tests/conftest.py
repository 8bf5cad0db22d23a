import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# read once, at start: the autouse fixture below removes FMNIST_DATA_DIR from each test's environment
DATA_DIR_FROM_ENV = os.environ.get("FMNIST_DATA_DIR")


def real_data_dir() -> Path:
    """The official files for tests: $FMNIST_DATA_DIR, else the shared folder beside the checkout."""
    d = Path(DATA_DIR_FROM_ENV or REPO.parent / "shared" / "data" / "fashion-mnist")
    if not (d / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real Fashion-MNIST files not found in {d}; set FMNIST_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return real_data_dir()


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache; a session-wide parsed cache keeps real-data loads fast."""
    monkeypatch.setenv("FMNIST_PARITY_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("FMNIST_DATA_DIR", raising=False)
    monkeypatch.setenv("FMNIST_RETRY_DELAY", "0")
