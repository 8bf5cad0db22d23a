"""The data layer: parsing, verification, search order, download, and every bad-input message."""

import gzip
import hashlib
import http.server
import shutil
import socketserver
import threading
from pathlib import Path

import numpy as np
import pytest

from shared import data as fdata

NAMES = list(fdata.FILES)


def leftovers(directory: Path) -> list[str]:
    """Temp or partial files an aborted write would leave behind."""
    return [p.name for p in Path(directory).rglob("*") if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


@pytest.fixture(scope="module")
def real(data_dir):
    return fdata.load(data_dir)


@pytest.fixture
def copy_dir(tmp_path, data_dir):
    d = tmp_path / "copy"
    d.mkdir()
    for n in NAMES:
        shutil.copy(data_dir / f"{n}.gz", d / f"{n}.gz")
    return d


@pytest.fixture
def no_implicit_sources(tmp_path, monkeypatch):
    """Point every implicit place at empty folders (the Debian path is checked to be absent)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home" / ".keras"))
    monkeypatch.setenv("FMNIST_TORCHVISION_ROOT", str(tmp_path / "tv"))
    monkeypatch.setenv("FMNIST_PARITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FMNIST_DEBIAN_DIR", str(tmp_path / "debian"))  # even where the package is installed
    monkeypatch.chdir(tmp_path)


def test_official_arrays(real):
    assert real.train_images.shape == (60000, 28, 28) and real.train_images.dtype == np.uint8
    assert real.train_labels.shape == (60000,) and real.test_images.shape == (10000, 28, 28)
    assert real.test_labels.shape == (10000,)
    assert real.train_labels[0] == 9  # ankle boot, the original order
    assert np.bincount(real.train_labels).tolist() == [6000] * 10
    assert np.bincount(real.test_labels).tolist() == [1000] * 10
    mean, std = fdata.pixel_stats(real.train_images)
    assert round(mean, 4) == 0.2860 and round(std, 4) == 0.3530
    assert real.sha256 == {n: fdata.FILES[n][0] for n in NAMES}


def test_uncompressed_files_and_warm_cache(tmp_path, real):
    d = tmp_path / "raw"
    d.mkdir()
    for n, key in fdata.KEYS.items():
        (d / n).write_bytes(fdata.idx_bytes(getattr(real, key)))
    cold = fdata.load(d)
    assert np.array_equal(cold.train_images, real.train_images)
    parsed = list((fdata.cache_dir() / "parsed").glob("*.npz"))
    assert parsed, "a parsed cache entry is written"
    warm = fdata.load(d)
    assert np.array_equal(warm.test_labels, real.test_labels) and warm.sha256 == real.sha256


def test_idx_round_trip(real):
    b = fdata.idx_bytes(real.test_labels)
    assert np.array_equal(fdata.parse_idx(b, "t10k-labels-idx1-ubyte", "x"), real.test_labels)


# ------------------------------------------------------------ bad input: one clear line, nothing left behind


def corrupt_case(d: Path, case: str):
    p = d / "train-labels-idx1-ubyte.gz"
    content = gzip.decompress(p.read_bytes())
    if case == "truncated gzip":
        p.write_bytes(p.read_bytes()[:1000])
        return "truncated or corrupt gzip"
    if case == "corrupt gzip":
        raw = bytearray(p.read_bytes())
        raw[20:40] = b"\x00" * 20
        p.write_bytes(bytes(raw))
        return "truncated or corrupt gzip"
    if case == "wrong magic":
        p.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + content[4:]))
        return "wrong IDX magic number 00000803, expected 00000801"
    if case == "wrong dimensions":
        p.write_bytes(gzip.compress(content[:4] + (59999).to_bytes(4, "big") + content[8:-1]))
        return "wrong dimensions (59999,), expected (60000,)"
    if case == "wrong count":
        p.write_bytes(gzip.compress(content[:-5]))
        return "59995 data bytes, expected 60000"
    if case == "label out of range":
        p.write_bytes(gzip.compress(content[:8] + b"\x0c" + content[9:]))
        return "label 12 at index 0 is outside 0..9"
    if case == "checksum mismatch":
        lab = bytearray(content)
        lab[8], lab[9] = lab[9], lab[8] if lab[8] != lab[9] else (lab[8] + 1) % 10
        p.write_bytes(gzip.compress(bytes(lab)))
        actual = hashlib.sha256(bytes(lab)).hexdigest()
        return f"checksum mismatch: sha256 of the decompressed content is {actual}, expected {fdata.FILES['train-labels-idx1-ubyte'][0]}"
    if case == "partial directory":
        (d / "t10k-images-idx3-ubyte.gz").unlink()
        (d / "t10k-labels-idx1-ubyte.gz").unlink()
        return "incomplete: missing t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]"
    if case == "unreadable file":
        # root reads any mode bits, so make the name a directory: unreadable as a file for anyone
        p.unlink()
        p.mkdir()
        return "cannot read file"
    raise AssertionError(case)


CASES = [
    "truncated gzip",
    "corrupt gzip",
    "wrong magic",
    "wrong dimensions",
    "wrong count",
    "label out of range",
    "checksum mismatch",
    "partial directory",
    "unreadable file",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(case, copy_dir, capsys):
    from compare.cli import main

    expected = corrupt_case(copy_dir, case)
    parsed_before = set((fdata.cache_dir() / "parsed").glob("*"))
    rc = main(["data", "--data-dir", str(copy_dir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err, err
    assert err.startswith("error: ") and err.count("\n") == 1, "one line, no traceback"
    if case != "partial directory":
        assert "train-labels-idx1-ubyte" in err, "the message names the file"
    assert leftovers(fdata.cache_dir()) == [] and leftovers(copy_dir) == []
    assert set((fdata.cache_dir() / "parsed").glob("*")) == parsed_before, "nothing cached from bad files"


def test_explicit_directory_is_never_replaced(tmp_path, data_dir, monkeypatch):
    # a good implicit source exists, but the explicit one is bad: refuse, don't fall back
    kh = tmp_path / "keras"
    (kh / "datasets").mkdir(parents=True)
    shutil.copytree(data_dir, kh / "datasets" / "fashion-mnist")
    monkeypatch.setenv("KERAS_HOME", str(kh))
    with pytest.raises(fdata.DataError, match="not a directory"):
        fdata.load(tmp_path / "nope")
    monkeypatch.setenv("FMNIST_DATA_DIR", str(tmp_path / "nope"))
    with pytest.raises(fdata.DataError, match="not a directory"):
        fdata.load()


def test_offline_nothing_found_lists_places_and_fixes(no_implicit_sources, capsys):
    from compare.cli import main

    rc = main(["data", "--offline"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    for where in ("project cache", "Debian package", "torchvision root", "Keras cache", "downloads are off"):
        assert where in err
    assert "apt-get install dataset-fashion-mnist" in err and "--data-dir" in err and "allow the download" in err


def test_search_order_finds_torchvision_and_keras_layouts(no_implicit_sources, tmp_path, data_dir):
    tv = tmp_path / "tv" / "FashionMNIST" / "raw"
    shutil.copytree(data_dir, tv)
    got = fdata.load(offline=True)
    assert got.source.startswith("torchvision root") and got.directory == str(tv)
    kh = tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist"
    shutil.copytree(data_dir, kh)
    shutil.rmtree(tv)
    got = fdata.load(offline=True)
    assert got.source.startswith("Keras cache")
    # a broken higher-priority source is skipped with a note, not used
    (tmp_path / "cache" / "fashion-mnist").mkdir(parents=True)
    (tmp_path / "cache" / "fashion-mnist" / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    notes = []
    got = fdata.load(offline=True, log=notes.append)
    assert got.source.startswith("Keras cache") and "skipping project cache" in notes[0]


# ------------------------------------------------------------ download against a loopback server


class Server:
    """Serves the official files from one folder, with per-file misbehaviour."""

    def __init__(self, root: Path):
        self.root, self.mode, self.hits = root, {}, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.hits.append(name)
                path = outer.root / name
                mode = outer.mode.get(name, "good")
                if mode == "404" or not path.exists():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                if mode == "truncated":
                    body = body[: len(body) // 2]
                if mode == "corrupted":
                    body = body[:100] + bytes(b ^ 0xFF for b in body[100:200]) + body[200:]
                self.send_response(200)
                self.send_header("Content-Length", str(len(path.read_bytes()) if mode == "drop" else len(body)))
                self.end_headers()
                if mode == "drop":  # promise the whole file, send a third, hang up
                    self.wfile.write(body[: len(body) // 3])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(data_dir, monkeypatch):
    """Serves the test's data files. Debian's package re-compresses them (same content, other .gz
    bytes), so the expected MD5 is that of the files served; the content is still checked by SHA-256."""
    for name, (sha, _, magic, shape) in list(fdata.FILES.items()):
        md5 = hashlib.md5((data_dir / f"{name}.gz").read_bytes()).hexdigest()
        monkeypatch.setitem(fdata.FILES, name, (sha, md5, magic, shape))
    s = Server(data_dir)
    yield s
    s.close()


def test_download_good(no_implicit_sources, server, monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_MIRRORS", server.url)
    got = fdata.load()
    assert got.source.startswith("download into") and got.train_labels[0] == 9
    assert sorted(p.name for p in (tmp_path / "cache" / "fashion-mnist").iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    assert leftovers(tmp_path / "cache") == []
    server.hits.clear()
    again = fdata.load()  # now found in the cache, no network
    assert again.source.startswith("project cache") and server.hits == []


@pytest.mark.parametrize(
    "mode,why",
    [
        ("truncated", "truncated or corrupt gzip"),
        ("corrupted", "gzip"),
        ("404", "HTTP 404"),
        ("drop", "connection closed after"),
    ],
)
def test_download_failures_leave_nothing(mode, why, no_implicit_sources, server, monkeypatch, tmp_path):
    monkeypatch.setenv("FMNIST_MIRRORS", server.url)
    server.mode["train-labels-idx1-ubyte.gz"] = mode
    with pytest.raises(fdata.DataError) as e:
        fdata.load()
    msg = str(e.value)
    assert "train-labels-idx1-ubyte.gz" in msg and why in msg, msg
    assert "Fix it in one of three ways" in msg
    assert not (tmp_path / "cache" / "fashion-mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert leftovers(tmp_path / "cache") == []
    tries = server.hits.count("train-labels-idx1-ubyte.gz")
    assert tries == (1 if mode == "404" else 3), "retries transient failures, not a 404"


def test_download_falls_back_to_next_mirror(no_implicit_sources, server, monkeypatch, tmp_path, data_dir):
    good = Server(data_dir)
    try:
        server.mode["t10k-labels-idx1-ubyte.gz"] = "corrupted"
        monkeypatch.setenv("FMNIST_MIRRORS", f"{server.url},{good.url}")
        got = fdata.load()
        assert np.bincount(got.test_labels).tolist() == [1000] * 10
        assert "t10k-labels-idx1-ubyte.gz" in good.hits
    finally:
        good.close()
