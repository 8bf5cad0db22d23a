import os
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


def real_data_dir() -> Path:
    """The official files for tests: $FMNIST_DATA_DIR, else where ./test.sh would find them."""
    if REAL_DATA is None or not (REAL_DATA / "train-images-idx3-ubyte.gz").exists():
        pytest.fail(f"real Fashion-MNIST files not found ({REAL_DATA or 'nowhere'}); run ./test.sh, which finds "
                    f"or installs them, or set FMNIST_DATA_DIR to the folder holding the four files")
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
