import dataclasses
import gzip
import http.server
import shutil
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from practicum.data import cache
from practicum.data.cache import dataset_info, dataset_names, fetch, fetch_file, verify
from practicum.data.synthetic import make_moons, train_test_split
from practicum.data.tabular import load_airfoil
from practicum.data.vision import load_mnist, read_idx
from practicum.errors import PracticumError, UsageError

LABELS = "t10k-labels-idx1-ubyte.gz"  # 4.5 kB, the smallest real IDX file


def flip_byte(path: Path, at: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*")) if root.exists() else []


# ----------------------------------------------------------------------------- registry


def test_registry_matches_every_mirror_sha256sums(data_mirror):
    folders = sorted(p.name for p in data_mirror.iterdir() if p.is_dir())
    assert dataset_names() == folders
    for name in folders:
        sums = dict(reversed(line.split()) for line in
                    (data_mirror / name / "SHA256SUMS").read_text().splitlines())
        files = {f.path: f for f in dataset_info(name).files}
        assert {p: f.sha256 for p, f in files.items()} == sums, name
        for rel, f in files.items():
            assert (data_mirror / name / rel).stat().st_size == f.size, (name, rel)


def test_registry_urls_and_metadata():
    assert len(dataset_info("fruit-detection-voc").files) == 600
    for name in dataset_names():
        info = dataset_info(name)
        assert info.description and info.citation and info.license, name
        for f in info.files:
            assert f.url.startswith(("http://", "https://")) or (f.url == "" and f.note), f
    mnist = dataset_info("mnist").file("train-images-idx3-ubyte.gz")
    assert mnist.url == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    apple = dataset_info("fruit-detection-voc").file("test/apple_77.jpg")
    assert apple.url.endswith("/test_zip/test/apple_77.jpg")
    assert dataset_info("fra-eng").file("fra.txt").url == ""


def test_unknown_dataset_or_file_suggests_nearest():
    with pytest.raises(UsageError, match=r"unknown dataset 'mnsit' \(did you mean 'mnist'\?\)"):
        dataset_info("mnsit")
    with pytest.raises(UsageError, match=r"'mnist' has no file 'train-images.gz' \(did you mean"):
        fetch_file("mnist", "train-images.gz")
    with pytest.raises(UsageError, match="fashion-mnist"):
        load_mnist("fashion")


def test_cache_and_mirror_roots(monkeypatch, tmp_path):
    monkeypatch.delenv("PRACTICUM_DATA_CACHE", raising=False)
    monkeypatch.delenv("PRACTICUM_DATA_MIRROR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache.cache_root() == tmp_path / ".cache" / "practicum" / "data"
    assert cache.mirror_root() is None


# ----------------------------------------------------------------------------- fetching


def test_fetch_copies_from_mirror_then_hits_cache(data_env, data_mirror, monkeypatch):
    path = fetch_file("fruit-detection-voc", "train/apple_1.xml")
    assert path == data_env / "fruit-detection-voc" / "train" / "apple_1.xml"
    assert path.read_bytes() == (data_mirror / "fruit-detection-voc/train/apple_1.xml").read_bytes()

    folder = fetch("rt-polarity")
    assert sorted(p.name for p in folder.iterdir()) == ["rt-polarity.neg", "rt-polarity.pos"]
    assert not [p for p in all_files(data_env) if ".tmp" in p.name]  # no temp files left

    # With the mirror gone and downloads off, only the cache can answer.
    monkeypatch.delenv("PRACTICUM_DATA_MIRROR")
    cache._verified.clear()  # force a real re-hash of the cached copy
    assert fetch_file("fruit-detection-voc", "train/apple_1.xml") == path


def test_bad_cached_file_is_deleted_and_fetched_again(data_env, data_mirror, monkeypatch):
    path = fetch_file("mnist", LABELS)
    flip_byte(path)
    assert verify("mnist")[1].status == "bad-sha256"
    assert fetch_file("mnist", LABELS) == path
    assert path.read_bytes() == (data_mirror / "mnist" / LABELS).read_bytes()

    # With nowhere to fetch it from, the bad copy is still removed, and the error says so.
    path.write_bytes(path.read_bytes()[:-1])
    monkeypatch.delenv("PRACTICUM_DATA_MIRROR")
    with pytest.raises(PracticumError, match=r"removed a bad cached copy: .* 4541 bytes, expected"):
        fetch_file("mnist", LABELS)
    assert not path.exists()


@pytest.mark.parametrize("damage, match", [
    (flip_byte, r"has sha256 [0-9a-f]{64}, expected f7ae60f92e00"),
    (lambda p: p.write_bytes(p.read_bytes()[:1000]), r"has 1000 bytes, expected 4542"),
])
def test_bad_mirror_file_is_an_error_and_never_cached(data_env, tmp_path, monkeypatch, data_mirror,
                                                      damage, match):
    mirror = tmp_path / "mirror"
    (mirror / "mnist").mkdir(parents=True)
    bad = mirror / "mnist" / LABELS
    shutil.copy(data_mirror / "mnist" / LABELS, bad)
    damage(bad)
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(mirror))
    with pytest.raises(PracticumError, match=match) as exc:
        fetch_file("mnist", LABELS)
    assert str(bad) in str(exc.value) and "'mnist'" in str(exc.value)
    assert [p for p in all_files(data_env) if p.is_file()] == []


def test_missing_file_offline_names_dataset_file_and_folders(data_env, tmp_path, monkeypatch):
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(empty))
    with pytest.raises(PracticumError) as exc:
        fetch_file("timemachine", "timemachine.txt")
    msg = str(exc.value)
    for part in ("'timemachine'", "'timemachine.txt'", "PRACTICUM_OFFLINE=1",
                 str(data_env / "timemachine" / "timemachine.txt"),
                 str(empty / "timemachine" / "timemachine.txt"),
                 "http://d2l-data.s3-accelerate.amazonaws.com/timemachine.txt"):
        assert part in msg
    assert "\n" not in msg

    monkeypatch.delenv("PRACTICUM_DATA_MIRROR")
    with pytest.raises(PracticumError, match="PRACTICUM_DATA_MIRROR unset"):
        fetch_file("timemachine", "timemachine.txt")


def test_file_without_download_url_says_where_to_get_it(data_env, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PRACTICUM_OFFLINE", "0")  # must not try the network either way
    with pytest.raises(PracticumError, match=r"'fra.txt' is missing and has no direct download.*"
                                             r"manythings.org/anki/fra-eng.zip"):
        fetch_file("fra-eng", "fra.txt")


def test_verify_reports_each_status(data_env):
    for rel in ("t10k-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        fetch_file("mnist", rel)
    shutil.copy(data_env / "mnist" / LABELS, data_env / "mnist" / "t10k-images-idx3-ubyte.gz")
    flip_byte(data_env / "mnist" / "train-labels-idx1-ubyte.gz")
    fetch_file("rt-polarity", "rt-polarity.pos")

    assert {(r.file, r.status) for r in verify("mnist")} == {
        ("t10k-images-idx3-ubyte.gz", "bad-size"),
        ("t10k-labels-idx1-ubyte.gz", "ok"),
        ("train-images-idx3-ubyte.gz", "missing"),
        ("train-labels-idx1-ubyte.gz", "bad-sha256"),
    }
    rows = verify()
    assert len(rows) == sum(len(dataset_info(n).files) for n in dataset_names())
    assert ("rt-polarity", "rt-polarity.pos", "ok") in rows


@pytest.fixture
def http_folder(tmp_path):
    """A local HTTP server over tmp_path/www: (folder, base url)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("corrupt", [False, True])
def test_download_is_verified_before_it_lands_in_the_cache(data_env, data_mirror, http_folder,
                                                           monkeypatch, corrupt):
    www, base = http_folder
    shutil.copy(data_mirror / "timemachine" / "timemachine.txt", www / "tm.txt")
    if corrupt:
        flip_byte(www / "tm.txt")
    info = dataset_info("timemachine")
    served = dataclasses.replace(info.files[0], url=base + "tm.txt")
    local = dataclasses.replace(info, files=(served,))
    monkeypatch.setattr(cache, "_registry", lambda: {"timemachine": local})
    monkeypatch.delenv("PRACTICUM_DATA_MIRROR")
    monkeypatch.setenv("PRACTICUM_OFFLINE", "0")
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    if corrupt:
        with pytest.raises(PracticumError, match=r"[0-9a-f]{64}, expected 8424dbd9.*not kept"):
            fetch_file("timemachine", "timemachine.txt")
        assert [p for p in all_files(data_env) if p.is_file() or p.name.endswith(".download")] == []
    else:
        path = fetch_file("timemachine", "timemachine.txt")
        assert path.read_bytes() == (data_mirror / "timemachine" / "timemachine.txt").read_bytes()
        assert all_files(data_env / "timemachine") == [path]


# ----------------------------------------------------------------------------- IDX and MNIST


def test_read_idx_gz_and_raw_agree(data_mirror, tmp_path):
    labels = read_idx(data_mirror / "fashion-mnist" / LABELS)
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10  # Fashion-MNIST test set is balanced
    raw = tmp_path / "labels.idx1"
    raw.write_bytes(gzip.decompress((data_mirror / "fashion-mnist" / LABELS).read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), labels)


def test_read_idx_truncated_names_file_and_sizes(data_mirror, tmp_path):
    raw = gzip.decompress((data_mirror / "mnist" / LABELS).read_bytes())
    short = tmp_path / "short.idx1"
    short.write_bytes(raw[:5008])  # 8-byte header + 5000 of 10000 labels
    with pytest.raises(PracticumError, match=r"short.idx1: "
                       r"IDX payload is 5000 bytes, expected 10000"):
        read_idx(short)

    gz = (data_mirror / "mnist" / LABELS).read_bytes()
    short_gz = tmp_path / "short.gz"
    short_gz.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(PracticumError, match=r"short.gz: .*expected 10000.*gzip stream ends early"):
        read_idx(short_gz)


def test_read_idx_rejects_non_idx_file(data_mirror, tmp_path):
    text = tmp_path / "timemachine.txt.gz"
    text.write_bytes(gzip.compress((data_mirror / "timemachine" / "timemachine.txt").read_bytes()))
    with pytest.raises(PracticumError, match=r"timemachine.txt.gz: not an IDX file \(magic 5468"):
        read_idx(text)


def test_load_mnist_real_counts(data_env):
    data = load_mnist("mnist")
    assert data.train_x.shape == (60000, 28, 28) and data.train_x.dtype == np.uint8
    assert data.test_x.shape == (10000, 28, 28) and data.test_x.dtype == np.uint8
    assert data.train_y.dtype == np.int64 and data.classes == [str(d) for d in range(10)]
    # Published per-digit counts of the MNIST training and test sets.
    assert np.bincount(data.train_y).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                  5421, 5918, 6265, 5851, 5949]
    assert np.bincount(data.test_y).tolist() == [980, 1135, 1032, 1010, 982,
                                                 892, 958, 1028, 974, 1009]
    assert abs(data.train_x.mean() / 255 - 0.1307) < 1e-3  # the usual normalisation mean

    data.train_x[0] = 0  # callers get their own writable copies
    again = load_mnist("mnist")
    assert again.train_x[0].any() and again.train_x is not data.train_x


# ----------------------------------------------------------------------------- tabular


def test_airfoil_is_registered_with_d2ls_url_licence_and_citation():
    info = dataset_info("airfoil")
    (f,) = info.files
    assert f.url == "http://d2l-data.s3-accelerate.amazonaws.com/airfoil_self_noise.dat"  # d2l.DATA_URL
    assert f.size == 59984 and f.sha256.startswith("74c75fd71783")
    assert info.license == "CC BY 4.0" and "NASA RP-1218" in info.citation and "1,503" in info.description


def test_load_airfoil_verifies_the_file_and_standardises_as_d2l(data_env, data_mirror, tmp_path, monkeypatch):
    import hashlib

    X, y = load_airfoil()
    cached = data_env / "airfoil" / "airfoil_self_noise.dat"
    assert hashlib.sha1(cached.read_bytes()).hexdigest() == "76e5be1548fd8222e5074cf0faae75edff8cf93f"  # DATA_HUB
    assert verify("airfoil")[0].status == "ok"
    assert X.shape == (1503, 5) and y.shape == (1503,) and X.dtype == y.dtype == np.float32
    np.testing.assert_allclose(X.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(X.std(0), 1, atol=1e-4)
    assert abs(y.mean()) < 1e-4 and abs(y.std() - 1) < 1e-4

    raw_X, raw_y = load_airfoil(standardize=False)  # the file's numbers: its first row, d2l's formula
    np.testing.assert_allclose(raw_X[0], [800, 0, 0.3048, 71.3, 0.00266337], rtol=1e-6)
    assert raw_y[0] == pytest.approx(126.201)
    data = np.column_stack([raw_X, raw_y])
    d2l = (data - data.mean(axis=0)) / data.std(axis=0)
    np.testing.assert_array_equal(X, d2l[:, :-1])
    np.testing.assert_array_equal(y, d2l[:, -1])

    mirror = tmp_path / "mirror" / "airfoil"  # a damaged copy is refused, never parsed
    mirror.mkdir(parents=True)
    shutil.copy(data_mirror / "airfoil" / "airfoil_self_noise.dat", mirror / "airfoil_self_noise.dat")
    flip_byte(mirror / "airfoil_self_noise.dat")
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(mirror.parent))
    monkeypatch.setenv("PRACTICUM_DATA_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(PracticumError, match=r"has sha256 [0-9a-f]{64}, expected 74c75fd71783"):
        load_airfoil()


# ----------------------------------------------------------------------------- synthetic


def test_make_moons_shape_balance_determinism():
    X, y = make_moons(101, 0.1, np.random.default_rng(0))
    assert X.shape == (101, 2) and X.dtype == np.float32 and y.dtype == np.int64
    assert np.bincount(y).tolist() == [50, 51]
    X2, y2 = make_moons(101, 0.1, np.random.default_rng(0))
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    X3, _ = make_moons(101, 0.1, np.random.default_rng(1))
    assert not np.array_equal(X, X3)
    assert (np.diff(y) != 0).sum() > 10  # shuffled, not two blocks


def test_make_moons_geometry_and_noise():
    X, y = make_moons(200, 0.0, np.random.default_rng(0))
    upper, lower = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1, atol=1e-6)  # arc centred at (0, 0)
    assert (upper[:, 1] >= -1e-6).all()
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1, atol=1e-6)
    assert (lower[:, 1] <= 0.5 + 1e-6).all()

    Xn, yn = make_moons(200, 0.2, np.random.default_rng(0))
    np.testing.assert_array_equal(yn, y)  # same shuffle, noise drawn after it
    assert 0.17 < (Xn - X).std() < 0.23


def test_train_test_split_partitions_rows():
    X = np.arange(20).reshape(10, 2)
    y = np.arange(10)
    Xtr, Xte, ytr, yte = train_test_split(X, y, 0.25, np.random.default_rng(0))
    assert len(Xte) == 3 and len(Xtr) == 7  # ceil(2.5)
    assert sorted(np.concatenate([ytr, yte]).tolist()) == list(range(10))
    np.testing.assert_array_equal(Xtr[:, 0] // 2, ytr)  # rows stay paired with labels
    again = train_test_split(X, y, 0.25, np.random.default_rng(0))
    np.testing.assert_array_equal(again[3], yte)
    with pytest.raises(UsageError, match="test_fraction"):
        train_test_split(X, y, 1.0, np.random.default_rng(0))
