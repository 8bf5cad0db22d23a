"""Fashion-MNIST, verified: find the four official IDX files, check them, parse them with numpy.

Framework-free (numpy only). Every public function returns or raises; nothing prints except
through the `log` callable the caller passes in (the CLI passes a stderr printer).

Search order (the first place holding all four files wins, and is reported):
  1. an explicit directory (`--data-dir` or $FMNIST_DATA_DIR): used or refused, never replaced;
  2. the project's cache ($FMNIST_PARITY_CACHE, else $XDG_CACHE_HOME/fmnist-parity, else
     ~/.cache/fmnist-parity) under `fashion-mnist/`;
  3. Debian/Ubuntu's `dataset-fashion-mnist` package: /usr/share/datasets/fashion-mnist/ ($FMNIST_DEBIAN_DIR);
  4. a torchvision root: <root>/FashionMNIST/raw/ for root in $FMNIST_TORCHVISION_ROOT, ./data, ~/data;
  5. the Keras cache: $KERAS_HOME/datasets/fashion-mnist/ (default ~/.keras);
  6. a download from the mirrors ($FMNIST_MIRRORS, comma-separated base URLs) into the cache,
     unless downloads are off (--offline or $FMNIST_OFFLINE=1).
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import re
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from shared.atomic import atomic_write

# The data set's shape, one home: what the official files hold (each file's shape is checked on load)
TRAIN_ROWS, TEST_ROWS, SIDE = 60000, 10000, 28
PIXELS = SIDE * SIDE

# name -> (sha256 of the decompressed IDX file, md5 of the upstream .gz, IDX magic, shape)
FILES = {
    "train-images-idx3-ubyte": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        0x0803,
        (TRAIN_ROWS, SIDE, SIDE),
    ),
    "train-labels-idx1-ubyte": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "25c81989df183df01b3e8a0aad5dffbe",
        0x0801,
        (TRAIN_ROWS,),
    ),
    "t10k-images-idx3-ubyte": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "bef4ecab320f06d8554ea6380940ec79",
        0x0803,
        (TEST_ROWS, SIDE, SIDE),
    ),
    "t10k-labels-idx1-ubyte": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        "bb300cfdad3c16e7a12a480ee83cd310",
        0x0801,
        (TEST_ROWS,),
    ),
}
KEYS = {
    "train-images-idx3-ubyte": "train_images",
    "train-labels-idx1-ubyte": "train_labels",
    "t10k-images-idx3-ubyte": "test_images",
    "t10k-labels-idx1-ubyte": "test_labels",
}
DEFAULT_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
PARSED_CACHE_VERSION = 1


class DataError(Exception):
    """A problem with the data that the user can fix; the message says what and how."""


@dataclass
class FashionMNIST:
    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8
    source: str  # human-readable: which place the files came from
    directory: str  # the directory holding the four files
    sha256: dict = field(default_factory=dict)  # file name -> verified digest of the IDX content

    @functools.cached_property
    def train_pixel_stats(self) -> tuple[float, float]:
        """Mean and std of the training pixels /255: the `standardize` constants, computed once."""
        return pixel_stats(self.train_images)

    def scaled(self, scaling: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        """(x_train, x_test) flattened and scaled as the run config asks; both sides train on these."""
        mean, std = self.train_pixel_stats
        return (scale(self.train_images, scaling, mean, std, dtype), scale(self.test_images, scaling, mean, std, dtype))


def _quiet(_msg: str) -> None:
    pass


# ---------------------------------------------------------------- parsing and verification


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed content of an IDX file, gzip or plain; errors name the file."""
    try:
        raw = path.read_bytes()
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise DataError(
            f"{path}: cannot read file ({e.strerror or e}); check that it is a readable regular file"
        ) from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
        raise DataError(f"{path}: truncated or corrupt gzip ({e}); delete it and fetch the file again") from None


def parse_idx(content: bytes, name: str, where: str) -> np.ndarray:
    """Parse an IDX file already checked by digest, or report exactly what is wrong with it."""
    _, _, magic, shape = FILES[name]
    if len(content) < 4 or int.from_bytes(content[:4], "big") != magic:
        got = content[:4].hex() if len(content) >= 4 else f"{len(content)} bytes"
        raise DataError(f"{where}: wrong IDX magic number {got}, expected {magic:08x}; this is not the {name} file")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{where}: IDX header cut short ({len(content)} bytes)")
    dims = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if dims != shape:
        raise DataError(f"{where}: wrong dimensions {dims}, expected {shape}")
    body = len(content) - header
    if body != int(np.prod(shape)):
        raise DataError(f"{where}: {body} data bytes, expected {int(np.prod(shape))} for shape {shape}")
    arr = np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)
    if ndim == 1 and arr.max(initial=0) > 9:
        bad = int(np.argmax(arr > 9))
        raise DataError(f"{where}: label {int(arr[bad])} at index {bad} is outside 0..9")
    return arr


def load_file(path: Path, name: str) -> tuple[np.ndarray, str]:
    """Read, verify by SHA-256 of the decompressed content, parse. Returns (array, digest)."""
    content = read_idx_bytes(path)
    digest = hashlib.sha256(content).hexdigest()
    expected = FILES[name][0]
    if digest != expected:
        # Structural problems give the more useful message; fall back to the digest mismatch.
        parse_idx(content, name, str(path))
        raise DataError(
            f"{path}: checksum mismatch: sha256 of the decompressed content is {digest}, "
            f"expected {expected}; the file is not the official {name}"
        )
    return parse_idx(content, name, str(path)), digest


def find_files(directory: Path) -> dict[str, Path]:
    """Map each of the four names to the file present in `directory` (.gz preferred)."""
    found = {}
    for name in FILES:
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.exists() or candidate.is_symlink():
                found[name] = candidate
                break
    return found


def load_directory(directory: Path, source: str, cache: Path | None = None) -> FashionMNIST:
    """Load and verify all four files of one directory; raise DataError if any is missing or bad."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(
            f"{directory}: not a directory; point --data-dir / FMNIST_DATA_DIR at the "
            f"folder holding the four Fashion-MNIST files"
        )
    found = find_files(directory)
    missing = [n for n in FILES if n not in found]
    if missing:
        have = ", ".join(sorted(p.name for p in found.values())) or "none of them"
        raise DataError(
            f"{directory}: incomplete: missing {', '.join(m + '[.gz]' for m in missing)} "
            f"(found {have}); all four files are needed"
        )
    parsed = _parsed_cache_path(cache, found) if cache else None
    if parsed is not None and parsed.exists():
        try:
            with np.load(parsed) as z:
                arrays = {k: z[k] for k in KEYS.values()}
                digests = {n: str(z["sha256_" + KEYS[n]]) for n in FILES}
            if all(digests[n] == FILES[n][0] for n in FILES):
                return FashionMNIST(**arrays, source=source, directory=str(directory), sha256=digests)
        except Exception:  # a damaged cache entry is rebuilt below
            pass
    arrays, digests = {}, {}
    for name in FILES:
        arrays[KEYS[name]], digests[name] = load_file(found[name], name)
    data = FashionMNIST(**arrays, source=source, directory=str(directory), sha256=digests)
    if parsed is not None:
        _write_parsed_cache(parsed, data)
    return data


# ---------------------------------------------------------------- the parsed cache (fast warm loads)


def cache_dir() -> Path:
    if os.environ.get("FMNIST_PARITY_CACHE"):
        return Path(os.environ["FMNIST_PARITY_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fmnist-parity"


def _parsed_cache_path(cache: Path, found: dict[str, Path]) -> Path:
    # Keyed by where the files are and their size and mtime: a changed file misses the cache.
    h = hashlib.sha256(str(PARSED_CACHE_VERSION).encode())
    for name in FILES:
        st = found[name].stat()
        h.update(f"{found[name].resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return cache / "parsed" / f"fashion-mnist-{h.hexdigest()[:16]}.npz"


def _write_parsed_cache(path: Path, data: FashionMNIST) -> None:
    arrays = {k: getattr(data, k) for k in KEYS.values()}
    arrays.update({"sha256_" + KEYS[n]: np.array(d) for n, d in data.sha256.items()})
    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))
    except OSError:
        pass  # a cache we cannot write only costs speed


# ---------------------------------------------------------------- download


def _download_one(url: str, dest: Path, name: str, log: Callable, retries: int, timeout: float, progress: bool) -> None:
    """Fetch one .gz with pooch (streamed to a temp file beside dest, checked against the upstream
    MD5, moved into place), then check its decompressed content; raise DataError after `retries`
    failed tries (a 4xx is final: a missing file does not appear by retrying)."""
    import pooch
    import requests

    pooch.get_logger().setLevel("WARNING")
    dest.parent.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(timeout=timeout, progressbar=progress)
    last = ""
    for attempt in range(1, retries + 1):
        try:
            pooch.retrieve(
                url, known_hash=f"md5:{FILES[name][1]}", fname=dest.name, path=dest.parent, downloader=downloader
            )
            try:
                load_file(dest, name)  # the decompressed content, by its SHA-256
            except DataError:
                dest.unlink(missing_ok=True)
                raise
            return
        except requests.HTTPError as e:
            last = f"HTTP {e.response.status_code} {e.response.reason}"
            if 400 <= e.response.status_code < 500:
                break
        except ValueError as e:  # pooch: the MD5 of what arrived is not the official .gz's
            last = (
                "its MD5 differs from the official file's (a truncated or corrupt gzip download)"
                if "hash" in str(e).lower()
                else str(e)
            )
        except DataError as e:
            last = str(e).split(": ", 1)[-1]
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError) as e:
            why = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(e))
            last = (
                "connection closed after a partial transfer"
                if "IncompleteRead" in str(e) or "ended prematurely" in str(e)
                else f"connection failed ({why.group(1) if why else e})"
            )
        except (requests.RequestException, OSError) as e:
            last = str(e) or type(e).__name__
        if attempt < retries:
            log(f"  {url}: {last}; retrying ({attempt}/{retries})")
            time.sleep(min(2 ** (attempt - 1), 4) * float(os.environ.get("FMNIST_RETRY_DELAY", "1")))
    raise DataError(f"{url}: {last}")


def mirrors() -> list[str]:
    env = os.environ.get("FMNIST_MIRRORS", "").strip()
    urls = [u.strip() for u in env.split(",") if u.strip()] if env else list(DEFAULT_MIRRORS)
    return [u if u.endswith("/") else u + "/" for u in urls]


def download(
    dest_dir: Path, log: Callable = _quiet, retries: int = 3, timeout: float = 30.0, progress: bool = False
) -> Path:
    """Download the four .gz files into dest_dir, each from the first mirror that serves it intact."""
    errors = []
    for name in FILES:
        dest = dest_dir / f"{name}.gz"
        if dest.exists():
            try:
                load_file(dest, name)
                continue
            except DataError:
                dest.unlink()
        for base in mirrors():
            try:
                log(f"downloading {base}{name}.gz")
                _download_one(base + name + ".gz", dest, name, log, retries, timeout, progress)
                break
            except DataError as e:
                errors.append(str(e))
        else:
            raise DataError("download failed: " + "; ".join(errors))
    return dest_dir


# ---------------------------------------------------------------- finding the data

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"  # where dataset-fashion-mnist installs the files


def candidate_dirs() -> list[tuple[str, Path]]:
    """The implicit places to look, in order, as (label, directory)."""
    places = [
        ("project cache", cache_dir() / "fashion-mnist"),
        ("Debian package dataset-fashion-mnist", Path(os.environ.get("FMNIST_DEBIAN_DIR", DEBIAN_DIR))),
    ]
    roots = [os.environ.get("FMNIST_TORCHVISION_ROOT"), "data", os.path.join("~", "data")]
    for root in filter(None, roots):
        places.append((f"torchvision root {root}", Path(root).expanduser() / "FashionMNIST" / "raw"))
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    places.append(("Keras cache", Path(keras_home).expanduser() / "datasets" / "fashion-mnist"))
    return places


def load(
    data_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
    log: Callable = _quiet,
    progress: bool = False,
) -> FashionMNIST:
    """The verified dataset, from the first place that has it (see the module docstring)."""
    cache = cache_dir()
    explicit = data_dir or os.environ.get("FMNIST_DATA_DIR")
    if explicit:
        label = "--data-dir" if data_dir else "FMNIST_DATA_DIR"
        return load_directory(Path(explicit).expanduser(), f"{label} {explicit}", cache)
    if offline is None:
        offline = os.environ.get("FMNIST_OFFLINE", "").lower() in ("1", "true", "yes")
    looked = []
    for label, directory in candidate_dirs():
        if not directory.is_dir() or not find_files(directory):
            looked.append(f"{label}: {directory} (not there)")
            continue
        try:
            return load_directory(directory, f"{label} {directory}", cache)
        except DataError as e:
            log(f"skipping {label}: {e}")
            looked.append(f"{label}: {directory} (unusable: {e})")
    download_error = "downloads are off (--offline / FMNIST_OFFLINE=1)"
    if not offline:
        target = cache / "fashion-mnist"
        try:
            download(target, log=log, progress=progress)
            return load_directory(target, f"download into {target}", cache)
        except DataError as e:
            download_error = str(e)
    raise DataError(
        "Fashion-MNIST not found. Looked in:\n  - "
        + "\n  - ".join(looked)
        + f"\n  - download from {', '.join(mirrors())}: {download_error}\n"
        "Fix it in one of three ways:\n"
        "  1. install the Debian/Ubuntu package: sudo apt-get install dataset-fashion-mnist\n"
        "  2. copy the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n"
        "     t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into a directory and pass\n"
        "     --data-dir DIR (or set FMNIST_DATA_DIR=DIR)\n"
        "  3. allow the download (drop --offline / unset FMNIST_OFFLINE; set FMNIST_MIRRORS to\n"
        "     comma-separated base URLs of a reachable mirror)"
    )


# ---------------------------------------------------------------- summaries and scaling


def pixel_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of the pixels scaled to [0, 1], in float64, from the 256-bin histogram (exact
    counts, so no 47-million-element float pass)."""
    counts = np.bincount(np.asarray(images, np.uint8).reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64) / 255.0
    n = counts.sum()
    mean = float(counts @ values / n)
    return mean, float(np.sqrt(counts @ (values - mean) ** 2 / n))


def host_dtype(dtype: str) -> str:
    """The numpy dtype of a run's data on the host: numpy has no bfloat16, so a bfloat16 run's data is
    scaled in float32 and rounded once, on the device, by each framework."""
    return "float32" if dtype == "bfloat16" else dtype


def scale(images: np.ndarray, mode: str, mean: float, std: float, dtype: str) -> np.ndarray:
    """Flatten to (n, 784) and scale, in the target dtype, with the same operation order as
    torchvision's ToTensor (x / 255) followed by Normalize ((x - mean) / std)."""
    dtype = host_dtype(dtype)
    x = images.reshape(len(images), -1).astype(dtype)
    x /= np.asarray(255, dtype)  # in place: the same operations and roundings, no temporaries
    if mode == "standardize":
        x -= np.asarray(mean, dtype)
        x /= np.asarray(std, dtype)
    return x


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialise a uint8 array as an IDX file (used to lay files out for torchvision)."""
    magic = 0x0800 | arr.ndim
    return (
        magic.to_bytes(4, "big")
        + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()
    )
