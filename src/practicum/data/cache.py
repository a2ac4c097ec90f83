"""Checksummed local copies of the datasets in ``datasets.toml``.

``fetch_file(name, relpath)`` returns a path in the cache holding exactly the registered bytes.
It looks in three places, in order:

1. the cache, ``$PRACTICUM_DATA_CACHE`` or ``~/.cache/practicum/data``, as ``<name>/<relpath>``
   (used when its size and sha256 match);
2. an offline mirror, ``$PRACTICUM_DATA_MIRROR``, laid out the same way (copied into the cache,
   sha256 checked before the copy gets its final name);
3. the file's download URL (pooch, with a progress bar), unless ``PRACTICUM_OFFLINE=1``.

Only verified bytes ever get a file's final name in the cache: copies and downloads go to a
temporary name first, and a cached file found bad is deleted before it is fetched again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from practicum.errors import PracticumError, UsageError
from practicum.fileio import atomic_open
from practicum.registry import nearest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileInfo:
    path: str  # relative to the dataset's folder, "/"-separated, e.g. "train/apple_1.jpg"
    size: int  # bytes
    sha256: str
    url: str  # "" when there is no direct download; then `note` says where to get it
    note: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    citation: str
    license: str
    files: tuple[FileInfo, ...]

    def file(self, relpath: str) -> FileInfo:
        for f in self.files:
            if f.path == relpath:
                return f
        raise UsageError(
            f"dataset '{self.name}' has no file '{relpath}'"
            f"{nearest(relpath, [f.path for f in self.files])}"
        )


class Row(NamedTuple):
    dataset: str
    file: str
    status: str  # ok | missing | bad-size | bad-sha256


# ----------------------------------------------------------------------------- registry


@lru_cache(maxsize=None)
def _registry() -> dict[str, DatasetInfo]:
    text = resources.files("practicum.data").joinpath("datasets.toml").read_text("utf-8")
    raw = tomllib.loads(text)
    out = {}
    for name, d in raw.items():
        base = d["base_url"]
        files = []
        for f in d["files"]:
            url = f.get("url", f["path"])
            if url and "://" not in url:
                url = base + url  # relative to the dataset's base_url
            files.append(FileInfo(f["path"], f["size"], f["sha256"], url, f.get("note", "")))
        out[name] = DatasetInfo(name, d["description"], d["citation"], d["license"], tuple(files))
    return out


def dataset_names() -> list[str]:
    return sorted(_registry())


def dataset_info(name: str) -> DatasetInfo:
    reg = _registry()
    if name not in reg:
        raise UsageError(
            f"unknown dataset '{name}'{nearest(name, reg)}; valid: {', '.join(sorted(reg))}"
        )
    return reg[name]


# ----------------------------------------------------------------------------- places


def cache_root() -> Path:
    env = os.environ.get("PRACTICUM_DATA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "practicum" / "data"


def mirror_root() -> Path | None:
    env = os.environ.get("PRACTICUM_DATA_MIRROR")
    return Path(env).expanduser() if env else None


def offline() -> bool:
    return os.environ.get("PRACTICUM_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------- checksums

# path -> (size, mtime_ns, sha256) of files already hashed in this process, so repeated loads
# of the same unchanged cached file don't hash it again.
_verified: dict[Path, tuple[int, int, str]] = {}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _check(name: str, info: FileInfo, path: Path, memo: bool = True) -> str | None:
    """None if `path` holds the registered bytes, else a one-line reason naming the file."""
    st = path.stat()
    if st.st_size != info.size:
        _verified.pop(path, None)
        return (f"dataset '{name}': {path} has {st.st_size} bytes, expected {info.size} "
                f"(truncated or a different file)")
    key = (st.st_size, st.st_mtime_ns, info.sha256)
    if memo and _verified.get(path) == key:
        return None
    digest = sha256_of(path)
    if digest != info.sha256:
        _verified.pop(path, None)
        return f"dataset '{name}': {path} has sha256 {digest}, expected {info.sha256}"
    _verified[path] = key
    return None


def _status(name: str, info: FileInfo, path: Path) -> str:
    if not path.is_file():
        return "missing"
    if path.stat().st_size != info.size:
        return "bad-size"
    return "ok" if _check(name, info, path, memo=False) is None else "bad-sha256"


# ----------------------------------------------------------------------------- fetching


def fetch_file(name: str, relpath: str) -> Path:
    """Path in the cache of one verified file of dataset `name` (fetched if needed)."""
    info = dataset_info(name).file(relpath)
    dest = cache_root() / name / relpath

    removed = ""
    if dest.is_file():
        problem = _check(name, info, dest)
        if problem is None:
            return dest
        dest.unlink()  # a bad file never stays in the cache
        removed = f" (removed a bad cached copy: {problem})"
        print(f"practicum: {problem}; removed it, fetching again", file=sys.stderr)

    mirror = mirror_root()
    src = mirror / name / relpath if mirror is not None else None
    if src is not None and src.is_file():
        _copy_verified(name, info, src, dest)
        return dest

    where = f"mirror {src}" if src else "no mirror (PRACTICUM_DATA_MIRROR unset)"
    looked = f"cache {dest}, {where}"
    if not info.url:
        raise PracticumError(
            f"dataset '{name}': file '{relpath}' is missing and has no direct download; it is "
            f"{info.note}. Put it at {dest} or in a mirror (looked in {looked}){removed}"
        )
    if offline():
        raise PracticumError(
            f"dataset '{name}': file '{relpath}' is missing and PRACTICUM_OFFLINE=1 forbids "
            f"downloading it from {info.url} (looked in {looked}){removed}"
        )
    _download_verified(name, info, dest)
    return dest


def fetch(name: str) -> Path:
    """The cache folder of dataset `name`, holding all its files, verified."""
    for f in dataset_info(name).files:
        fetch_file(name, f.path)
    return cache_root() / name


def _copy_verified(name: str, info: FileInfo, src: Path, dest: Path) -> None:
    size = src.stat().st_size
    if size != info.size:
        raise PracticumError(
            f"dataset '{name}': mirror file {src} has {size} bytes, expected {info.size} "
            f"(truncated or a different file); not copied"
        )
    h = hashlib.sha256()
    # atomic_open writes a temp file and renames it only if the block ends without an error,
    # so raising on a mismatch leaves nothing in the cache.
    with atomic_open(dest, "wb") as out, open(src, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            out.write(chunk)
        if h.hexdigest() != info.sha256:
            raise PracticumError(
                f"dataset '{name}': mirror file {src} has sha256 {h.hexdigest()}, "
                f"expected {info.sha256}; not copied"
            )
    st = dest.stat()
    _verified[dest] = (st.st_size, st.st_mtime_ns, info.sha256)


def _download_verified(name: str, info: FileInfo, dest: Path) -> None:
    import pooch  # imported here: it pulls in requests, which most runs never need

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Download under a temporary folder next to the destination, verify, then rename: the
    # final name only ever holds checked bytes, and a failed download leaves nothing behind.
    tmpdir = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".download"))
    print(f"practicum: downloading {name}/{info.path} from {info.url}", file=sys.stderr)
    log = pooch.get_logger()
    level = log.level
    log.setLevel(logging.WARNING)  # pooch would announce the temporary path
    try:
        try:
            got = Path(pooch.retrieve(
                info.url, known_hash=None, fname=dest.name, path=tmpdir,
                downloader=pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=60),
            ))
        except Exception as e:  # requests' and pooch's errors share no useful base class
            raise PracticumError(
                f"dataset '{name}': downloading '{info.path}' from {info.url} failed "
                f"({type(e).__name__}: {e}); set PRACTICUM_DATA_MIRROR to a folder holding "
                f"{name}/{info.path} to use a local copy"
            ) from e
        problem = _check(name, info, got, memo=False)
        if problem is not None:
            raise PracticumError(f"{problem} (downloaded from {info.url}; not kept)")
        os.replace(got, dest)
    finally:
        log.setLevel(level)
        shutil.rmtree(tmpdir, ignore_errors=True)
    st = dest.stat()
    _verified[dest] = (st.st_size, st.st_mtime_ns, info.sha256)


# ----------------------------------------------------------------------------- verify


def verify(name: str | None = None) -> list[Row]:
    """Status of every registered file in the cache (all datasets, or one), hashing each.

    Read-only: a bad file is reported, not deleted; the next fetch replaces it.
    """
    names = [name] if name is not None else dataset_names()
    rows = []
    for n in names:
        for f in dataset_info(n).files:
            rows.append(Row(n, f.path, _status(n, f, cache_root() / n / f.path)))
    return rows
